"""Monthly invoices (domain.md section 5, docs/invoices.md) on the real PostgreSQL.

Rows are inserted into contracts / asset_qh / trading_qh / redispatch_compensation directly; every
expected amount is worked out by hand in the comment next to it (kW x 0.25 / 1000 = MWh; net
rounded to cents half-up, VAT = round(net x 0.19), gross = net + VAT).
"""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest

from intraday.backoffice.invoices import export_invoices, issue_invoices, run_invoices
from intraday.readmodels.invoicing import compute_invoices

pytestmark = pytest.mark.integration

CRM_FILE = "2025-06-01T04:30:00Z"
QH1, QH2, QH3 = "2025-06-10T10:00:00Z", "2025-06-10T10:15:00Z", "2025-06-10T10:30:00Z"


# ---------------------------------------------------------------------------------------------
# helpers: rows as the sink writes them


@pytest.fixture
def db(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        yield conn


def add_contract(conn, contract_id, asset_id, *, price_model="fixed", price=90.0, fee_model="fixed_as_produced",
                 fee=2.0, fee_percent=None, capacity=2.5, begin="2025-01-01", end=None, errors=(),
                 email="owner@example.org", file_time=CRM_FILE):
    conn.execute(
        "INSERT INTO contracts (file_time, contract_id, asset_id, metering_point_id, capacity_mw, technology,"
        " contract_begin, contract_end, price_model, price_eur_mwh, fee_model, fee, fee_percent, email, errors)"
        " VALUES (%s, %s, %s, %s, %s, 'wind', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (file_time, contract_id, asset_id, f"MP-{asset_id}", capacity, begin, end, price_model, price, fee_model,
         fee, fee_percent, email, json.dumps(list(errors))))


def add_qh(conn, asset_id, delivery_start, best_kw, source="final", *, latest_kw=None, redispatched=False):
    conn.execute(
        "INSERT INTO asset_qh (asset_id, delivery_start, latest_kw, best_kw, best_source, live_kw, final_kw,"
        " redispatched) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (asset_id, delivery_start, latest_kw, best_kw, source, best_kw if source == "live" else None,
         best_kw if source == "final" else None, redispatched))


def add_final_range(conn, asset_id, first, last, kw):
    """Final values of ``kw`` for every QH from ``first`` to ``last`` (inclusive)."""
    conn.execute(
        "INSERT INTO asset_qh (asset_id, delivery_start, best_kw, best_source, final_kw)"
        " SELECT %s, t, %s, 'final', %s FROM generate_series(%s::timestamptz, %s::timestamptz, interval '15 min') t",
        (asset_id, kw, kw, first, last))


def add_vwap(conn, delivery_start, vwap):
    conn.execute("INSERT INTO trading_qh (delivery_start, book, trades, sold_mwh, bought_mwh, net_mwh, vwap_eur_mwh)"
                 " VALUES (%s, 'public', 3, 0, 0, 0, %s)", (delivery_start, vwap))


def add_compensation(conn, delivery_start, price):
    conn.execute("INSERT INTO redispatch_compensation (delivery_start, published_at, price_eur_mwh)"
                 " VALUES (%s, '2025-06-11T00:00:00Z', %s)", (delivery_start, price))


def entry(quantity, unit_price, net, vat, gross):
    return {"quantity": quantity, "unit_price_eur": unit_price, "net_eur": net, "vat_eur": vat, "gross_eur": gross}


NOTHING = entry(0.0, None, 0.0, 0.0, 0.0)
NULLS = entry(None, None, None, None, None)


def by_id(invoices):
    return {inv["contract_id"]: inv for inv in invoices}


def june(conn):
    return by_id(compute_invoices(conn, 2025, 6))


# ---------------------------------------------------------------------------------------------
# price model x fee model
#
# A1: QH1 2000 kW final = 0.5 MWh, public VWAP 80; QH2 4000 kW final = 1.0 MWh, VWAP 100.
#   fixed 90:   1.5 x 90 = 135.00, VAT 25.65, gross 160.65
#   market:     0.5 x 80 + 1.0 x 100 = 140.00, unit 140 / 1.5 = 93.3333, VAT 26.60, gross 166.60
#   fixed_as_produced fee 2:           1.5 x 2 = 3.00, VAT 0.57, gross 3.57
#   fixed_for_capacity 2.5 MW x 10:    25.00, VAT 4.75, gross 29.75
#   percent_of_market 5 %:             140 x 0.05 = 7.00, unit 7 / 1.5 = 4.6667, VAT 1.33, gross 8.33

FIXED_90 = entry(1.5, 90.0, 135.0, 25.65, 160.65)
MARKET = entry(1.5, 93.3333, 140.0, 26.6, 166.6)
FEE_PRODUCED = entry(1.5, 2.0, 3.0, 0.57, 3.57)
FEE_CAPACITY = entry(2.5, 10.0, 25.0, 4.75, 29.75)
FEE_PERCENT = entry(1.5, 4.6667, 7.0, 1.33, 8.33)


@pytest.mark.parametrize(("price_model", "fee_model", "fee", "infeed", "fees", "total_gross"), [
    ("fixed", "fixed_as_produced", 2.0, FIXED_90, FEE_PRODUCED, 157.08),     # 160.65 - 3.57
    ("fixed", "fixed_for_capacity", 10.0, FIXED_90, FEE_CAPACITY, 130.90),   # 160.65 - 29.75
    ("fixed", "percent_of_market", None, FIXED_90, FEE_PERCENT, 152.32),     # 160.65 - 8.33
    ("market", "fixed_as_produced", 2.0, MARKET, FEE_PRODUCED, 163.03),      # 166.60 - 3.57
    ("market", "fixed_for_capacity", 10.0, MARKET, FEE_CAPACITY, 136.85),    # 166.60 - 29.75
    ("market", "percent_of_market", None, MARKET, FEE_PERCENT, 158.27),      # 166.60 - 8.33
])
def test_every_price_model_and_fee_model_pays_the_hand_computed_amounts(
        db, price_model, fee_model, fee, infeed, fees, total_gross):
    add_contract(db, "C1", "A1", price_model=price_model, price=90.0 if price_model == "fixed" else None,
                 fee_model=fee_model, fee=fee, fee_percent=5.0 if fee_model == "percent_of_market" else None,
                 capacity=2.5)
    add_qh(db, "A1", QH1, 2000.0)
    add_qh(db, "A1", QH2, 4000.0)
    add_vwap(db, QH1, 80.0)
    add_vwap(db, QH2, 100.0)

    [inv] = compute_invoices(db, 2025, 6)

    assert list(inv)[:12] == ["contract_id", "asset_id", "month", "status", "provisional", "volume_mwh",
                              "unpriced_qh", "infeed_payout", "fees", "redispatch_payout", "total_gross_eur",
                              "errors"]
    assert (inv["contract_id"], inv["asset_id"], inv["month"]) == ("C1", "A1", "2025-06")
    assert inv["status"] == "ok" and inv["errors"] == []
    assert inv["provisional"] is False
    assert inv["volume_mwh"] == 1.5
    assert inv["unpriced_qh"] == 0
    assert inv["infeed_payout"] == infeed
    assert inv["fees"] == fees
    assert inv["redispatch_payout"] == NOTHING
    assert inv["total_gross_eur"] == total_gross


def test_a_half_cent_is_rounded_up_in_the_net_and_again_in_the_vat(db):
    # 1000 kW = 0.25 MWh x 9.98 = 2.495 -> net 2.50; VAT 2.50 x 0.19 = 0.475 -> 0.48 (binary float
    # rounding would give 0.47); gross 2.98. Fee 0.25 x 0.02 = 0.005 -> 0.01, VAT 0.0019 -> 0.00.
    add_contract(db, "C1", "A1", price=9.98, fee=0.02)
    add_qh(db, "A1", QH1, 1000.0)

    inv = june(db)["C1"]

    assert inv["infeed_payout"] == entry(0.25, 9.98, 2.5, 0.48, 2.98)
    assert inv["fees"] == entry(0.25, 0.02, 0.01, 0.0, 0.01)
    assert inv["total_gross_eur"] == 2.97
    assert inv["total_net_eur"] == 2.49
    assert inv["total_vat_eur"] == 0.48


# ---------------------------------------------------------------------------------------------
# which contracts and which QHs


def test_a_contract_is_invoiced_for_its_half_open_berlin_days_from_its_begin_to_before_its_end(db):
    add_contract(db, "C1", "A1", begin="2025-06-10", end="2025-06-20")
    add_qh(db, "A1", "2025-06-09T21:45:00Z", 4000.0)  # 9 June 23:45 Berlin: before the begin
    add_qh(db, "A1", "2025-06-09T22:00:00Z", 4000.0)  # 10 June 00:00 Berlin: first QH
    add_qh(db, "A1", "2025-06-19T21:45:00Z", 4000.0)  # 19 June 23:45 Berlin: last QH
    add_qh(db, "A1", "2025-06-19T22:00:00Z", 4000.0)  # 20 June 00:00 Berlin: the end day is not covered

    inv = june(db)["C1"]

    assert inv["qh_count"] == 2
    assert inv["volume_mwh"] == 2.0
    assert inv["infeed_payout"] == entry(2.0, 90.0, 180.0, 34.2, 214.2)   # 2 x 90
    assert inv["fees"] == entry(2.0, 2.0, 4.0, 0.76, 4.76)                # 2 x 2
    assert inv["total_gross_eur"] == 209.44                               # 214.20 - 4.76
    assert (inv["period_first_day"], inv["period_last_day"]) == ("2025-06-10", "2025-06-19")
    assert (inv["period_start"], inv["period_end"]) == ("2025-06-09T22:00:00Z", "2025-06-19T22:00:00Z")
    assert inv["period_qh_count"] == 960  # 10 days x 96
    assert (inv["covered_days"], inv["month_days"]) == (10, 30)


def test_contracts_that_cover_no_day_of_the_month_get_no_invoice(db):
    add_contract(db, "ENDED", "A1", begin="2025-01-01", end="2025-05-31")
    add_contract(db, "ENDS-ON-THE-1ST", "A1", begin="2025-05-01", end="2025-06-01")  # covers 31 May last
    add_contract(db, "EMPTY", "A1", begin="2025-06-15", end="2025-06-15")            # covers no day
    add_contract(db, "LATER", "A1", begin="2025-07-01")
    add_contract(db, "OPEN", "A1", begin="2025-01-01")
    add_contract(db, "LAST-DAY", "A1", begin="2025-06-30", end="2025-07-01")
    add_contract(db, "FIRST-DAY", "A1", begin="2025-05-20", end="2025-06-02")
    add_qh(db, "A1", QH1, 2000.0)

    assert sorted(june(db)) == ["FIRST-DAY", "LAST-DAY", "OPEN"]


# A capacity fee is a monthly fee pro rata temporis: capacity x fee x days covered / days of the month.
#   June, from the 21st (open end): 10 of 30 days: 2.5 x 10 x 10 / 30 = 8.3333 -> 8.33, VAT 1.58, gross 9.91
#   October 2025, the fall-back day alone (25 hours, 100 QHs): 1 of 31 days: 25 / 31 = 0.8065 -> 0.81,
#   VAT 0.1539 -> 0.15, gross 0.96
#   March 2025, the spring-forward day alone (23 hours, 92 QHs): 25 / 31 -> the same 0.81
@pytest.mark.parametrize(("begin", "end", "year", "month", "days", "fees"), [
    ("2025-06-21", None, 2025, 6, 10, entry(2.5, 3.3333, 8.33, 1.58, 9.91)),
    ("2025-10-26", "2025-10-27", 2025, 10, 1, entry(2.5, 0.3226, 0.81, 0.15, 0.96)),
    ("2025-03-30", "2025-03-31", 2025, 3, 1, entry(2.5, 0.3226, 0.81, 0.15, 0.96)),
    ("2025-01-01", None, 2025, 6, 30, entry(2.5, 10.0, 25.0, 4.75, 29.75)),
])
def test_a_capacity_fee_is_charged_pro_rata_of_the_berlin_days_the_contract_covers(
        db, begin, end, year, month, days, fees):
    add_contract(db, "C1", "A1", fee_model="fixed_for_capacity", fee=10.0, capacity=2.5, begin=begin, end=end)

    [inv] = compute_invoices(db, year, month)

    assert inv["status"] == "ok"
    assert inv["covered_days"] == days
    assert inv["fees"] == fees


def test_the_newest_crm_file_is_the_truth_and_a_dropped_contract_is_withdrawn(db):
    # the first file lists C1 and C2 for all of June; the correction (a newer file) drops C2 and
    # moves C1's end to the 11th: C1 is invoiced for 10 June only (a correction, not a new period)
    add_contract(db, "C1", "A1", begin="2025-06-01", price=100.0, fee=0.0)
    add_contract(db, "C2", "A2", begin="2025-06-01", price=100.0, fee=0.0)
    add_qh(db, "A1", QH1, 400.0)                        # 10 June: 0.1 MWh
    add_qh(db, "A1", "2025-06-12T10:00:00Z", 400.0)     # 12 June
    add_qh(db, "A2", QH1, 400.0)
    first = by_id(issue_invoices(db, 2025, 6))
    newer = "2025-06-15T04:30:00Z"
    add_contract(db, "C1", "A1", begin="2025-06-01", end="2025-06-11", price=100.0, fee=0.0, file_time=newer)

    second = by_id(issue_invoices(db, 2025, 6))

    assert sorted(first) == ["C1", "C2"] and first["C1"]["qh_count"] == 2
    assert sorted(second) == ["C1"]
    assert second["C1"]["qh_count"] == 1 and second["C1"]["volume_mwh"] == 0.1
    states = dict(db.execute("SELECT contract_id, state FROM invoices_current").fetchall())
    assert states == {"C1": "provisional", "C2": "withdrawn"}
    out = db.execute("SELECT count(*) FROM invoices WHERE contract_id = 'C2'").fetchone()[0]
    assert out == 2  # the issued version stays, the withdrawal is the next one


def test_an_invoice_is_provisional_while_any_invoiced_qh_of_its_asset_is_not_final(db):
    for asset in ("A1", "A2", "A3"):
        add_contract(db, f"C-{asset}", asset, price=100.0, fee=1.0)
    add_qh(db, "A1", QH1, 2000.0, "final")    # 0.5 MWh
    add_qh(db, "A1", QH2, 4000.0, "live")     # 1.0 MWh, not final
    add_qh(db, "A2", QH1, 1000.0, "final")    # 0.25 MWh; no row at QH2: 0 MWh, not final
    add_qh(db, "A3", QH1, 400.0, "final")     # 0.1 MWh
    add_qh(db, "A3", QH2, 800.0, "final")     # 0.2 MWh

    invoices = june(db)

    assert {c: (i["provisional"], i["volume_mwh"], i["final_qh_count"]) for c, i in invoices.items()} == {
        "C-A1": (True, 1.5, 1), "C-A2": (True, 0.25, 1), "C-A3": (False, 0.3, 2)}
    assert invoices["C-A3"]["infeed_payout"] == entry(0.3, 100.0, 30.0, 5.7, 35.7)   # 0.3 x 100
    assert invoices["C-A3"]["fees"] == entry(0.3, 1.0, 0.3, 0.06, 0.36)              # VAT 0.057 -> 0.06
    assert invoices["C-A3"]["total_gross_eur"] == 35.34


def test_quarter_hours_known_only_from_forecasts_are_never_invoiced(db):
    add_contract(db, "C1", "A1", price=100.0, fee=1.0)
    add_qh(db, "A1", QH1, 2000.0, "final")         # 0.5 MWh, the only QH with a measurement
    add_qh(db, "A1", QH2, 8000.0, "forecast")      # future
    add_qh(db, "A1", QH3, 8000.0, "forecast")

    inv = june(db)["C1"]

    assert inv["qh_count"] == 1
    assert inv["volume_mwh"] == 0.5
    assert inv["provisional"] is False
    assert inv["infeed_payout"]["net_eur"] == 50.0


def test_an_asset_without_a_measurement_is_invoiced_on_its_forecast_in_qhs_another_asset_measured(db):
    add_contract(db, "C1", "A1", price=100.0, fee=1.0)
    add_contract(db, "C2", "A2", price=100.0, fee=1.0)
    add_qh(db, "A1", QH1, 2000.0, "live")          # makes QH1 invoiced
    add_qh(db, "A2", QH1, 1200.0, "forecast")      # 0.3 MWh on its forecast

    inv = june(db)["C2"]

    assert inv["qh_count"] == 1
    assert inv["volume_mwh"] == 0.3
    assert inv["provisional"] is True
    assert inv["infeed_payout"] == entry(0.3, 100.0, 30.0, 5.7, 35.7)


def test_only_the_newest_crm_file_defines_the_contracts_and_the_portfolio(db):
    add_contract(db, "C1", "A1", price=50.0, fee=1.0, file_time="2025-05-25T04:30:00Z")
    add_contract(db, "C-OLD", "A-OLD", file_time="2025-05-25T04:30:00Z")
    add_contract(db, "C1", "A1", price=90.0, fee=1.0)
    add_qh(db, "A1", QH1, 2000.0, "final")         # 0.5 MWh
    add_qh(db, "A-OLD", QH2, 2000.0, "live")       # not in the portfolio: QH2 is not invoiced

    invoices = june(db)

    assert list(invoices) == ["C1"]
    assert invoices["C1"]["qh_count"] == 1
    assert invoices["C1"]["infeed_payout"] == entry(0.5, 90.0, 45.0, 8.55, 53.55)   # 0.5 x 90


def test_a_contract_whose_asset_has_no_data_yet_is_listed_with_nothing_produced_and_is_provisional(db):
    add_contract(db, "C1", "A1", fee_model="fixed_for_capacity", fee=10.0, capacity=2.5)
    add_contract(db, "C2", "A2")
    add_qh(db, "A2", QH1, 2000.0)

    inv = june(db)["C1"]

    assert inv["volume_mwh"] == 0.0
    assert inv["provisional"] is True
    assert inv["infeed_payout"] == entry(0.0, 90.0, 0.0, 0.0, 0.0)
    assert inv["fees"] == entry(2.5, 10.0, 25.0, 4.75, 29.75)   # the capacity fee is not pro-rated
    assert inv["total_gross_eur"] == -29.75


# ---------------------------------------------------------------------------------------------
# market prices and redispatch


def test_a_qh_without_a_public_vwap_pays_nothing_at_market_and_is_counted_as_unpriced(db):
    add_contract(db, "MARKET", "A1", price_model="market", price=None, fee=1.0)
    add_contract(db, "FIXED", "A1", price=90.0, fee=1.0)
    add_contract(db, "FIXED-PERCENT", "A1", price=90.0, fee_model="percent_of_market", fee=None, fee_percent=10.0)
    add_qh(db, "A1", QH1, 2000.0)   # 0.5 MWh at VWAP 80
    add_qh(db, "A1", QH2, 4000.0)   # 1.0 MWh, no public trade
    add_vwap(db, QH1, 80.0)

    invoices = june(db)

    market = invoices["MARKET"]
    assert market["unpriced_qh"] == 1
    assert market["infeed_payout"] == entry(1.5, 26.6667, 40.0, 7.6, 47.6)       # 0.5 x 80; 40 / 1.5
    assert market["fees"] == entry(1.5, 1.0, 1.5, 0.29, 1.79)                      # VAT 0.285 -> 0.29
    assert market["total_gross_eur"] == 45.81                                      # 47.60 - 1.79
    assert invoices["FIXED"]["unpriced_qh"] == 0
    assert invoices["FIXED"]["infeed_payout"] == entry(1.5, 90.0, 135.0, 25.65, 160.65)
    assert invoices["FIXED-PERCENT"]["unpriced_qh"] == 1
    assert invoices["FIXED-PERCENT"]["fees"] == entry(1.5, 2.6667, 4.0, 0.76, 4.76)  # 40 x 10 %; 4 / 1.5


def test_a_negative_vwap_reduces_the_market_payout(db):
    add_contract(db, "C1", "A1", price_model="market", price=None, fee=0.0)
    add_qh(db, "A1", QH1, 2000.0)   # 0.5 MWh x -20 = -10.00
    add_qh(db, "A1", QH2, 4000.0)   # 1.0 MWh x 30 = 30.00
    add_vwap(db, QH1, -20.0)
    add_vwap(db, QH2, 30.0)

    inv = june(db)["C1"]

    assert inv["infeed_payout"] == entry(1.5, 13.3333, 20.0, 3.8, 23.8)
    assert inv["total_gross_eur"] == 23.8


def test_redispatched_qhs_pay_the_latest_forecast_times_the_dso_compensation_price(db):
    add_contract(db, "C1", "A1", price=100.0, fee=0.0)
    add_contract(db, "C2", "A2")
    add_qh(db, "A2", QH1, 1000.0, "live")   # makes QH1 invoiced
    # QH1: curtailed, best 0 from the flag, latest forecast 3000 kW = 0.75 MWh x 120 = 90.00
    add_qh(db, "A1", QH1, 0.0, "redispatch", latest_kw=3000.0, redispatched=True)
    add_compensation(db, QH1, 120.0)
    # QH2: curtailed but measured 400 kW = 0.1 MWh; forecast 2000 kW = 0.5 MWh, no DSO price yet
    add_qh(db, "A1", QH2, 400.0, "live", latest_kw=2000.0, redispatched=True)
    # QH3: curtailed in the future (forecast only): not invoiced
    add_qh(db, "A1", QH3, 0.0, "redispatch", latest_kw=8000.0, redispatched=True)
    add_compensation(db, QH3, 120.0)

    inv = june(db)["C1"]

    assert inv["qh_count"] == 2
    assert inv["volume_mwh"] == 0.1
    assert inv["provisional"] is True
    assert inv["infeed_payout"] == entry(0.1, 100.0, 10.0, 1.9, 11.9)
    assert inv["redispatch_payout"] == entry(1.25, 72.0, 90.0, 17.1, 107.1)   # 90 / (0.75 + 0.5)
    assert (inv["redispatch_qh"], inv["redispatch_unpriced_qh"]) == (2, 1)
    assert inv["fees"] == entry(0.1, 0.0, 0.0, 0.0, 0.0)
    assert inv["total_gross_eur"] == 119.0                                   # 11.90 + 107.10


# ---------------------------------------------------------------------------------------------
# inconsistent contracts


def test_an_inconsistent_contract_names_every_problem_and_the_other_invoices_are_still_produced(db):
    add_contract(db, "BAD-1", "A1", price=None, fee_model="flat", errors=["missing metering_point_id"])
    add_contract(db, "BAD-2", "A1", price_model="market", price=None, fee_model="fixed_for_capacity", fee=None,
                 capacity=None)
    add_contract(db, "BAD-3", "A1", price_model=None, fee_model="percent_of_market", fee=None, fee_percent=None)
    add_contract(db, "BAD-4", "A1", price_model="fixd", errors=["unknown price_model 'FIXD'"])
    add_contract(db, "GOOD", "A1", price=90.0, fee=2.0)
    add_qh(db, "A1", QH1, 2000.0)   # 0.5 MWh

    invoices = june(db)

    assert {c: (i["status"], i["errors"]) for c, i in invoices.items()} == {
        "BAD-1": ("error", ["missing metering_point_id", "price_model fixed requires price",
                            "unknown fee_model 'flat'"]),
        "BAD-2": ("error", ["fee_model fixed_for_capacity requires fee",
                            "fee_model fixed_for_capacity requires capacity"]),
        "BAD-3": ("error", ["missing price_model", "fee_model percent_of_market requires fee_percent"]),
        "BAD-4": ("error", ["unknown price_model 'FIXD'"]),
        "GOOD": ("ok", []),
    }
    bad = invoices["BAD-1"]
    assert (bad["infeed_payout"], bad["fees"], bad["redispatch_payout"]) == (NULLS, NULLS, NULLS)
    assert bad["total_gross_eur"] is None
    assert bad["volume_mwh"] == 0.5
    assert invoices["GOOD"]["total_gross_eur"] == 52.36   # 0.5 x 90 = 45.00 -> 53.55; fee 1.00 -> 1.19


# ---------------------------------------------------------------------------------------------
# a DST month


def test_october_2025_has_2980_quarter_hours_and_a_fully_measured_month_invoices_all_of_them(db):
    # 1 Oct 00:00 Berlin = 30 Sep 22:00Z .. 1 Nov 00:00 Berlin = 31 Oct 23:00Z: 745 h = 2980 QHs
    add_contract(db, "C1", "A1", price=50.0, fee=1.0)
    add_final_range(db, "A1", "2025-09-30T21:45:00Z", "2025-10-31T23:00:00Z", 400.0)  # one QH each side extra

    [inv] = compute_invoices(db, 2025, 10)

    assert inv["month"] == "2025-10"
    assert (inv["qh_count"], inv["period_qh_count"], inv["complete"]) == (2980, 2980, True)
    assert inv["volume_mwh"] == 298.0                                           # 2980 x 0.1
    assert inv["provisional"] is False
    assert inv["infeed_payout"] == entry(298.0, 50.0, 14900.0, 2831.0, 17731.0)
    assert inv["fees"] == entry(298.0, 1.0, 298.0, 56.62, 354.62)
    assert inv["total_gross_eur"] == 17376.38
    [stored] = issue_invoices(db, 2025, 10)
    assert (stored["version"], stored["state"]) == (1, "final")


def test_in_a_dst_month_only_the_quarter_hours_with_data_are_invoiced(db):
    add_contract(db, "C1", "A1", price=50.0, fee=1.0)
    # the 02:00-03:00 Berlin hour twice on 26 Oct: 00:00Z .. 01:45Z, eight QHs
    add_final_range(db, "A1", "2025-10-26T00:00:00Z", "2025-10-26T01:45:00Z", 400.0)

    [inv] = compute_invoices(db, 2025, 10)

    assert (inv["qh_count"], inv["period_qh_count"], inv["complete"]) == (8, 2980, False)
    assert inv["volume_mwh"] == 0.8
    assert inv["infeed_payout"] == entry(0.8, 50.0, 40.0, 7.6, 47.6)
    assert (inv["period_start"], inv["period_end"]) == ("2025-09-30T22:00:00Z", "2025-10-31T23:00:00Z")
    assert (inv["period_first_day"], inv["period_last_day"]) == ("2025-10-01", "2025-10-31")
    [stored] = issue_invoices(db, 2025, 10)
    assert stored["state"] == "provisional"   # all final, but the month is not measured to its end


# ---------------------------------------------------------------------------------------------
# versions and traceability


def test_the_same_data_gives_the_same_content_hash_and_no_new_version(db):
    add_contract(db, "C1", "A1", price_model="market", price=None, fee=1.0)
    add_qh(db, "A1", QH1, 2000.0)
    add_vwap(db, QH1, 80.0)

    first = issue_invoices(db, 2025, 6)
    second = issue_invoices(db, 2025, 6)

    assert first == second
    assert (second[0]["version"], second[0]["state"]) == (1, "provisional")
    assert db.execute("SELECT count(*) FROM invoices").fetchone()[0] == 1
    assert {k: v for k, v in second[0].items() if k not in ("version", "state", "content_hash")} \
        == compute_invoices(db, 2025, 6)[0]


def test_changed_data_after_a_final_invoice_adds_a_corrected_version(db):
    add_contract(db, "C1", "A1", begin="2025-06-10", end="2025-06-11", price=100.0, fee=0.0)
    add_final_range(db, "A1", "2025-06-09T22:00:00Z", "2025-06-10T21:45:00Z", 400.0)   # 96 x 0.1 MWh

    [v1] = issue_invoices(db, 2025, 6)
    db.execute("UPDATE asset_qh SET best_kw = 800, final_kw = 800 WHERE delivery_start = %s", (QH1,))
    [v2] = issue_invoices(db, 2025, 6)
    [again] = issue_invoices(db, 2025, 6)

    assert (v1["version"], v1["state"], v1["total_gross_eur"]) == (1, "final", 1142.4)     # 9.6 x 100 x 1.19
    assert (v2["version"], v2["state"], v2["total_gross_eur"]) == (2, "corrected", 1154.3)  # 9.7 x 100 x 1.19
    assert v1["content_hash"] != v2["content_hash"]
    assert again == v2
    assert db.execute("SELECT array_agg(state ORDER BY version) FROM invoices").fetchone()[0] == \
        ["final", "corrected"]
    assert db.execute("SELECT version FROM invoices_current").fetchone()[0] == 2


def test_changed_data_without_a_final_version_adds_a_provisional_one_and_errors_are_drafts(db):
    add_contract(db, "C1", "A1", price=100.0, fee=0.0)
    add_contract(db, "BAD", "A1", price=None)
    add_qh(db, "A1", QH1, 2000.0, "live")

    first = by_id(issue_invoices(db, 2025, 6))
    db.execute("UPDATE asset_qh SET best_kw = 2400, live_kw = 2400")
    second = by_id(issue_invoices(db, 2025, 6))

    assert (first["C1"]["version"], first["C1"]["state"]) == (1, "provisional")
    assert (second["C1"]["version"], second["C1"]["state"]) == (2, "provisional")
    assert (first["BAD"]["state"], second["BAD"]["state"]) == ("draft", "draft")
    assert second["BAD"]["version"] == 2   # its volume changed: 0.5 -> 0.6 MWh


def test_invoice_lines_trace_every_quarter_hour_amount_with_the_price_used(db):
    add_contract(db, "C1", "A1", price_model="market", price=None, fee=2.0)
    add_qh(db, "A1", QH1, 2000.0, "final", latest_kw=1800.0)
    add_qh(db, "A1", QH2, 0.0, "redispatch", latest_kw=4000.0, redispatched=True)
    add_vwap(db, QH1, 80.0)
    add_compensation(db, QH2, 120.0)
    add_qh(db, "A2", QH2, 100.0, "live")
    add_contract(db, "C2", "A2")

    issue_invoices(db, 2025, 6)
    rows = db.execute(
        "SELECT kind, to_char(delivery_start AT TIME ZONE 'UTC', 'HH24:MI'), mwh, price_eur_mwh, amount_eur, source"
        " FROM invoice_lines WHERE contract_id = 'C1' ORDER BY kind, delivery_start").fetchall()

    assert rows == [
        ("fee", "10:00", Decimal("0.5"), Decimal("2.0"), Decimal("1.00"), "final"),
        ("fee", "10:15", Decimal("0.0"), Decimal("2.0"), Decimal("0.00"), "redispatch"),
        ("infeed", "10:00", Decimal("0.5"), Decimal("80.0"), Decimal("40.0"), "final"),
        ("infeed", "10:15", Decimal("0.0"), None, None, "redispatch"),
        ("redispatch", "10:15", Decimal("1.0"), Decimal("120.0"), Decimal("120.0"), "forecast"),
    ]


# ---------------------------------------------------------------------------------------------
# files


def test_export_writes_the_invoices_of_every_berlin_month_with_measured_data(db, tmp_path):
    add_contract(db, "C1", "A1", price=100.0, fee=0.0)
    add_qh(db, "A1", "2025-05-31T22:00:00Z", 400.0)   # 1 June 00:00 Berlin
    add_qh(db, "A1", "2025-09-30T21:45:00Z", 400.0)   # 30 Sep 23:45 Berlin
    add_qh(db, "A1", "2025-11-03T10:00:00Z", 400.0, "forecast")   # forecast only: no month

    n = export_invoices(db, tmp_path / "invoices.json")

    written = json.loads((tmp_path / "invoices.json").read_text())
    assert n == 2
    assert [(i["contract_id"], i["month"], i["volume_mwh"], i["version"]) for i in written] == [
        ("C1", "2025-06", 0.1, 1), ("C1", "2025-09", 0.1, 1)]


def test_run_invoices_writes_json_and_a_document_per_invoice_and_exits_4_naming_the_error(
        db, fresh_db, settings_for, tmp_path, capsys):
    add_contract(db, "C1", "A1", price=90.0, fee=2.0, email="owner-one@example.org")
    add_contract(db, "BAD/1", "A1", price=None)
    add_qh(db, "A1", QH1, 2000.0, "live")   # 0.5 MWh

    code = run_invoices(fresh_db, 2025, 6, tmp_path / "out")

    out = capsys.readouterr()
    assert code == 4
    assert "BAD/1 (price_model fixed requires price)" in out.err
    assert "C1 2025-06: ok provisional" in out.out
    written = json.loads((tmp_path / "out" / "invoices.json").read_text())
    assert [i["contract_id"] for i in written] == ["BAD/1", "C1"]
    doc = (tmp_path / "out" / "C1_2025-06.html").read_text()
    assert "owner-one@example.org" in doc and "PROVISIONAL" in doc
    assert "45.00 EUR" in doc and "53.55 EUR" in doc and "52.36 EUR" in doc   # net, gross, total
    assert "2025-06-01 to 2025-06-30" in doc
    bad_doc = (tmp_path / "out" / "BAD_1_2025-06.html").read_text()
    assert "price_model fixed requires price" in bad_doc and "ERROR" in bad_doc


def test_run_invoices_exits_0_when_every_invoice_is_ok(db, fresh_db, settings_for, tmp_path, capsys):
    add_contract(db, "C1", "A1")
    add_qh(db, "A1", QH1, 2000.0)

    assert run_invoices(fresh_db, 2025, 6, tmp_path / "out") == 0
    assert (tmp_path / "out" / "C1_2025-06.html").exists()
    assert "1 invoices" in capsys.readouterr().out
