"""The sink: derived topics -> PostgreSQL/TimescaleDB, and the export of the result files."""
