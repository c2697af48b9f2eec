"""The pure core: quarter-hours and units, the domain's rules, alerts and settlement money; standard library only."""
