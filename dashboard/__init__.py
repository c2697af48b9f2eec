"""The live dashboard of the trading desk (Dash + Plotly over the PostgreSQL results).

Layers, each importable without a database or a server:

- :mod:`dashboard.queries`: ``query_*(conn, ...) -> pandas.DataFrame``, parametrised SQL that runs on
  plain PostgreSQL and on TimescaleDB;
- :mod:`dashboard.figures`: pure ``DataFrame -> figure dict`` functions and the QH status rule;
- :mod:`dashboard.auth`: users file, password hashes, login page and the request guard;
- :mod:`dashboard.app`: ``create_app(settings)`` (the composition root: pool, auth, layout,
  callbacks) and ``serve(settings, host, port)``.
"""
