"""Synthetic delivery days: a seeded world of assets, weather, prices and trades, written in the formats of data-formats.md."""
