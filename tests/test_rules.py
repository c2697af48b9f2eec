"""The pure rules of domain.md: each running state checked against the batch formula."""

import math

from hypothesis import given
from hypothesis import strategies as st

from intraday import rules

T = 1_749_384_000  # 2025-06-08T12:00:00Z
QH = 900

versions = st.lists(
    st.tuples(st.integers(min_value=-48 * 4, max_value=4).map(lambda k: T + k * QH),
              st.floats(min_value=-5, max_value=5000, allow_nan=False)),
    min_size=1, max_size=30)


@given(versions, st.randoms())
def test_latest_and_tradeable_forecast_do_not_depend_on_arrival_order(rows, rnd):
    # one value per version (a version is issued once; a re-send repeats the same value)
    by_version = dict(rows)
    batch_latest = max((v for v in by_version if v <= T), default=None)
    batch_tradeable = max((v for v in by_version if v <= T - QH), default=None)
    arrival = list(by_version.items())
    rnd.shuffle(arrival)
    arrival += arrival[: len(arrival) // 2]  # duplicates arrive late too
    state = {}
    for v, kw in arrival:
        rules.apply_forecast_row(state, v, T, kw)
    assert state.get("lv") == batch_latest
    assert state.get("tv") == batch_tradeable
    if batch_latest is not None:
        assert state["lk"] == by_version[batch_latest]
    if batch_tradeable is not None:
        assert state["tk"] == by_version[batch_tradeable]
        assert state["tv"] <= T - QH  # never a version after gate closure


def test_the_domain_example_latest_1200_tradeable_1145():
    state = {}
    for v, kw in [(T - QH, 10.0), (T, 12.0), (T - 2 * QH, 8.0), (T + QH, 99.0)]:
        rules.apply_forecast_row(state, v, T, kw)
    assert (state["lv"], state["lk"], state["tv"], state["tk"]) == (T, 12.0, T - QH, 10.0)


trades = st.lists(st.tuples(st.sampled_from(["BUY", "SELL"]), st.floats(0.1, 50), st.floats(-500, 3000)),
                  min_size=1, max_size=40)


@given(trades, st.randoms())
def test_running_vwap_revenue_and_net_equal_the_batch_formulas_after_every_trade(ts, rnd):
    rnd.shuffle(ts)
    state = rules.new_trading_state()
    for i, (side, mw, price) in enumerate(ts, 1):
        rules.apply_trade_slice(state, T, side, mw, price, T - 100)
        seen = ts[:i]
        snap = rules.trading_snapshot("private", T, state)
        assert snap["trades"] == i
        vwap = sum(p * m for _, m, p in seen) / sum(m for _, m, _ in seen)
        assert math.isclose(snap["vwap_eur_mwh"], vwap, rel_tol=1e-9, abs_tol=1e-6)
        sold = sum(m * 0.25 for s, m, _ in seen if s == "SELL")
        bought = sum(m * 0.25 for s, m, _ in seen if s == "BUY")
        assert math.isclose(snap["net_mwh"], sold - bought, abs_tol=1e-9)
        revenue = sum((1 if s == "SELL" else -1) * m * 0.25 * p for s, m, p in seen)
        assert math.isclose(snap["revenue_eur"], revenue, rel_tol=1e-9, abs_tol=1e-6)


def test_index_windows_include_t_minus_3h_and_exclude_t():
    state = rules.new_trading_state()
    rules.apply_trade_slice(state, T, None, 1.0, 10.0, T - 3 * 3600)   # in full, 3h
    rules.apply_trade_slice(state, T, None, 1.0, 20.0, T - 3600)       # in full, 3h, 1h
    rules.apply_trade_slice(state, T, None, 1.0, 90.0, T)              # in full only
    rules.apply_trade_slice(state, T, None, 1.0, 40.0, T - 3 * 3600 - 1)  # full only
    snap = rules.trading_snapshot("public", T, state)
    assert snap["idx_full_eur_mwh"] == 40.0
    assert snap["idx_3h_eur_mwh"] == 15.0
    assert snap["idx_1h_eur_mwh"] == 20.0
    assert snap["sold_mwh"] == 0 and snap["revenue_eur"] is None


def test_best_of_infeed_prefers_final_then_live_then_redispatch_then_forecast():
    s = {}
    rules.apply_forecast_row(s, T - QH, T, 100.0)
    assert rules.best_of_infeed(s) == (100.0, "forecast")
    rules.apply_redispatch(s, T + 10, 2, True)
    assert rules.best_of_infeed(s) == (0.0, "redispatch")
    rules.apply_live_sample(s, "a", 30.0)
    rules.apply_live_sample(s, "b", -2.0)  # negative night value is real
    assert rules.best_of_infeed(s) == (14.0, "live")
    rules.apply_final(s, T + 86400, 3, 25.0)
    assert rules.best_of_infeed(s) == (25.0, "final")


def test_an_older_dso_file_never_replaces_a_newer_one_and_a_resend_changes_nothing():
    s = {}
    assert rules.apply_final(s, 200.0, 1, 5.0)
    assert not rules.apply_final(s, 100.0, 1, 7.0)
    assert not rules.apply_final(s, 200.0, 1, 5.0)
    assert s["fn"][2] == 5.0
    assert rules.apply_redispatch(s, 300.0, 1, True)
    assert rules.apply_redispatch(s, 400.0, 1, False)  # the newer flag file says not curtailed
    assert rules.best_of_infeed(s)[1] == "final" and rules.asset_snapshot("A", T, s)["redispatched"] is False


def test_imbalance_price_short_pays_unterdeckt_long_pays_ueberdeckt_else_estimate_else_missing():
    s = {}
    assert rules.imbalance_price(s, 1.0) == (None, "missing")
    rules.apply_price(s, "estimate", 10.0, 1, 55.0, None, None)
    assert rules.imbalance_price(s, -1.0) == (55.0, "estimate")
    rules.apply_price(s, "final", 20.0, 1, None, 80.0, 60.0)
    assert rules.imbalance_price(s, -1.0) == (80.0, "final")
    assert rules.imbalance_price(s, 1.0) == (60.0, "final")
    assert rules.imbalance_price(s, 0.0) == (60.0, "final")
    rules.apply_price(s, "final", 30.0, 1, None, None, 70.0)  # a newer final file lacks unterdeckt
    assert rules.imbalance_price(s, -1.0) == (80.0, "final")
    assert rules.imbalance_price(s, 1.0) == (70.0, "final")


def test_a_redispatched_asset_carries_no_imbalance_but_shows_position_and_actual():
    s = {"fu": [1.0, 1, 100.0], "fo": [1.0, 1, 90.0]}
    row = rules.asset_imbalance("A", T, [0.0, 400.0, 4000.0, True, True], s)
    assert row["imbalance_mwh"] == 0.0 and row["cost_eur"] == 0.0
    assert row["position_mwh"] == 1.0 and row["actual_mwh"] == 0.0


def test_asset_imbalance_is_actual_minus_position_and_cost_is_minus_imbalance_times_price():
    s = {"fu": [1.0, 1, 100.0], "fo": [1.0, 1, 90.0]}
    row = rules.asset_imbalance("A", T, [2000.0, 0.0, 4000.0, False, True], s)
    # actual 0.5 MWh, position 1.0 MWh: short 0.5 MWh at unterdeckt 100 -> we pay 50
    assert row["imbalance_mwh"] == -0.5 and row["price_eur_mwh"] == 100.0 and row["cost_eur"] == 50.0


def test_portfolio_imbalance_is_best_of_infeed_minus_net_sold_over_members_only():
    s = {"a": {"A": [4000.0, 4000.0, 4000.0, False, True], "B": [8000.0, 1.0, 1.0, False, True],
               "X": [1e6, 1e6, 1e6, False, True]},
         "t": {"net_mwh": 2.5, "trades": 3}, "est": [1.0, 1, 40.0]}
    row = rules.portfolio_row(T, s, {"A", "B"})
    assert row["best_of_infeed_kw"] == 12000.0 and row["net_sold_mwh"] == 2.5
    assert row["imbalance_mwh"] == 0.5 and row["imbalance_cost_eur"] == -20.0
    assert row["imbalance_price_source"] == "estimate" and row["in_scope"]


def test_portfolio_membership_change_is_seen_when_a_crm_file_arrives_over_several_batches():
    """Regression: the membership snapshot compared a list with itself after appending to it,
    so contracts of one CRM file arriving in a second batch were never broadcast."""
    from stream_processors.app import _newest_members

    files = {"2025-06-01T04:45:00Z": ["A"]}
    before = _newest_members(files)
    files["2025-06-01T04:45:00Z"].append("B")
    assert _newest_members(files) != before
