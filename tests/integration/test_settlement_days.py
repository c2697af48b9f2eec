"""Domain rules, second edition, end to end: generated days on both DST switches and a real-like
day whose contracts end on the day itself, begin on it, ended the month before, or were dropped
from the newest CRM file. Every result file equals tests/reference.py, every invoice equals
tests/reference_invoices.py, and the performance report pays what the invoices pay."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from compare import assert_results_equal
from pipeline import run_pipeline
from reference import compute_reference
from reference_invoices import assert_invoices_equal, reference_invoices

from intraday.backoffice.report.compute import performance_report
from intraday.core.qh import BERLIN, UTC
from intraday.ingest.generate.day import generate_day
from intraday.readmodels.invoicing import compute_invoices

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _rewrite_newest_crm(day_dir: Path, day: dt.date) -> dict[str, str]:
    """Contracts as real CRM files have them around a delivery day; returns what each one is."""
    newest = sorted((day_dir / "crm").glob("asset_contracts_*.csv"))[-1]
    rows = list(csv.DictReader(io.StringIO(newest.read_text())))
    header = list(rows[0])
    roles = {}
    ended_on_day, begins_on_day, ended_before, dropped = rows[0], rows[2], rows[3], rows[4]
    ended_on_day["contract_end"] = day.isoformat()                       # covers up to the day before
    begins_on_day["contract_begin"] = day.isoformat()
    begins_on_day["contract_end"] = ""
    ended_before["contract_end"] = day.replace(day=1).isoformat()        # its last day: the month before
    roles.update({ended_on_day["contract_id"]: "ends on the day", begins_on_day["contract_id"]: "begins on it",
                  ended_before["contract_id"]: "ended the month before", dropped["contract_id"]: "dropped"})
    keep = [r for r in rows if r is not dropped]
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(keep)
    newest.write_text(out.getvalue())
    return roles


DAYS = {
    "spring-forward": (dt.date(2025, 3, 30), 3, False),
    "fall-back": (dt.date(2025, 10, 26), 3, False),
    "contracts-around-the-day": (dt.date(2025, 6, 8), 6, True),
}


@pytest.mark.parametrize("name", list(DAYS))
def test_every_result_file_and_invoice_equals_the_reference(name, tmp_path, fresh_db, settings_for):
    day, assets, rewrite = DAYS[name]
    d = tmp_path / day.isoformat()
    generate_day(d, day, assets=assets, public_trades=1500, seed=21)
    roles = _rewrite_newest_crm(d, day) if rewrite else {}
    out = tmp_path / "out"
    run_pipeline(d, settings_for(fresh_db), out)

    ref = compute_reference(d)
    assert_results_equal(out, ref)
    expected = reference_invoices(d, ref)
    invoices = json.loads((out / "invoices.json").read_text())
    assert_invoices_equal(invoices, expected)

    month = f"{day:%Y-%m}"
    listed = {cid for cid, m in expected if m == month}
    if rewrite:
        by_role = {role: cid for cid, role in roles.items()}
        assert by_role["ends on the day"] in listed and by_role["begins on it"] in listed
        assert by_role["ended the month before"] not in listed and by_role["dropped"] not in listed
        got = {i["contract_id"]: i for i in invoices if i["month"] == month}
        # the day's own QHs are invoiced to the contract that begins on it, not to the one ending on it
        assert got[by_role["ends on the day"]]["qh_count"] == 0
        assert got[by_role["begins on it"]]["qh_count"] > 0
    # the portfolio imbalance counts redispatched assets as delivering their position
    port = pd.read_csv(out / "portfolio_qh.csv")
    rd = ref["infeed_qh.csv"].merge(ref["forecast_qh.csv"], on=["asset_id", "delivery_start"])
    rd = rd[rd["redispatched"] & rd["tradeable_kw"].notna()]
    if name == "contracts-around-the-day":
        assert len(rd) > 0, "the day must exercise redispatch"
        assert (port["balanced_mwh"] > 0).sum() == rd["delivery_start"].nunique()

    # the performance report over the Berlin month pays what the month's invoices pay
    first = dt.datetime.combine(day.replace(day=1), dt.time(0), tzinfo=BERLIN).astimezone(UTC)
    nxt = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    after = dt.datetime.combine(nxt, dt.time(0), tzinfo=BERLIN).astimezone(UTC)
    with psycopg.connect(fresh_db) as conn:
        report = performance_report(conn, first, after)
        month_invoices = {i["contract_id"]: i for i in compute_invoices(conn, day.year, day.month)}
    paid = {r["contract_id"]: r for r in report["contracts"]}
    assert sorted(paid) == sorted(month_invoices)
    for cid, inv in month_invoices.items():
        r = paid[cid]
        if inv["status"] == "error":
            assert r["status"] == "error"
            continue
        for mine, theirs in (("infeed_payout_eur", "infeed_payout"), ("fees_eur", "fees"),
                             ("redispatch_payout_eur", "redispatch_payout")):
            assert abs(r[mine] - inv[theirs]["net_eur"]) <= 0.005 + 1e-9, (cid, mine, r[mine], inv[theirs])
