"""``intraday export OUT_DIR``: the result files of contract.md, the read models' CSV files and
the back office's ``invoices.json``."""

from __future__ import annotations

from pathlib import Path

from intraday.backoffice.invoices import export_invoices
from intraday.readmodels.results import write_results
from intraday.sink.db import connect


def export(database_url: str, out_dir: Path) -> dict[str, int]:
    """Write the result files to ``out_dir``; returns the row count per file."""
    with connect(database_url) as conn:
        counts = write_results(conn, out_dir)
        counts["invoices.json"] = export_invoices(conn, out_dir / "invoices.json")
    return counts
