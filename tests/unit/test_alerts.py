"""Alert rules: hysteresis, stable ids, event-time dating, the three kinds."""

from intraday.core.alerts import (
    AlertConfig,
    evaluate_alerts,
    evaluate_open_position,
    evaluate_stale_feed,
    expire_alerts,
    feed_sample,
    in_horizon,
    qhs_due_for_position_check,
)

T = 1_749_384_000  # 2025-06-08T12:00:00Z (14:00 Berlin)
CFG = AlertConfig(imbalance_mwh=1.0, cost_eur=500.0, open_position_min=30.0, stale_feed_min=15.0)


def port(imbalance, cost=None, tradeable_kw=None, net_sold=0.0, price=50.0):
    return {"imbalance_mwh": imbalance, "imbalance_cost_eur": cost, "imbalance_price_eur_mwh": price,
            "tradeable_forecast_kw": tradeable_kw, "net_sold_mwh": net_sold}


def test_an_imbalance_alert_is_raised_once_and_resolved_under_80_percent():
    state = {}
    now = T - 7200
    assert [a["status"] for a in evaluate_alerts(CFG, T, state, port(1.5), now)] == ["raised"]
    assert evaluate_alerts(CFG, T, state, port(1.9), now + 60) == []          # still over: no repeat
    assert evaluate_alerts(CFG, T, state, port(0.9), now + 120) == []         # under 1.0, over 0.8
    resolved = evaluate_alerts(CFG, T, state, port(0.7), now + 180)
    assert [a["status"] for a in resolved] == ["resolved"]
    again = evaluate_alerts(CFG, T, state, port(-2.5), now + 240)
    assert again[0]["status"] == "raised" and again[0]["severity"] == "critical"
    assert again[0]["suggested_action"] == "buy 10.0 MW more for 14:00"
    assert again[0]["alert_id"] != resolved[0]["alert_id"]


def test_the_same_sequence_gives_the_same_alert_ids():
    def run():
        state, out = {}, []
        for i, imb in enumerate([0.2, 1.2, 0.5, 3.0, 0.1]):
            out += evaluate_alerts(CFG, T, state, port(imb, cost=-imb * 50), T - 7200 + i * 60)
        return [(a["alert_id"], a["status"]) for a in out]
    assert run() == run() and len(run()) == 4


def test_no_new_imbalance_alert_after_gate_closure():
    assert evaluate_alerts(CFG, T, {}, port(5.0), T - 900) == []


def test_no_alert_for_a_quarter_hour_beyond_the_horizon_until_it_comes_within():
    gate = T - 900
    assert not in_horizon(CFG, T, gate - 6 * 3600 - 1) and in_horizon(CFG, T, gate - 6 * 3600)
    state = {}
    assert evaluate_alerts(CFG, T, state, port(5.0), gate - 7 * 3600) == []   # 7 h ahead: not yet
    raised = evaluate_alerts(CFG, T, state, port(5.0), gate - 5 * 3600)       # 5 h ahead
    assert [a["status"] for a in raised] == ["raised"]
    assert evaluate_alerts(AlertConfig(horizon_h=1.0), T, {}, port(5.0), gate - 2 * 3600) == []


def test_an_open_alert_expires_at_the_gate_closure_of_its_quarter_hour_whatever_comes_later():
    gate = T - 900
    state = {}
    [raised] = evaluate_alerts(CFG, T, state, port(1.5, cost=600.0), gate - 3600)[:1]
    assert raised["status"] == "raised"
    # the next update of the QH (a live sample during delivery) comes after gate closure
    expired = evaluate_alerts(CFG, T, state, port(0.1), T + 300)
    assert sorted((a["kind"], a["status"]) for a in expired) == [("imbalance_cost", "expired"),
                                                                 ("imbalance_volume", "expired")]
    assert {a["detected_at"] for a in expired} == {"2025-06-08T11:45:00Z"}  # the gate closure, not the tick
    assert {a["alert_id"] for a in expired} >= {raised["alert_id"]}
    assert evaluate_alerts(CFG, T, state, port(9.0), T + 600) == []  # no more alerts for the QH
    assert expire_alerts(T, state, port(9.0)) == []                   # nothing is left open
    # an open-position alert expires the same way
    st2 = {}
    p = port(None, tradeable_kw=8000.0, net_sold=0.5)
    assert evaluate_open_position(CFG, T, st2, p, gate - 10 * 60)[0]["status"] == "raised"
    assert [a["status"] for a in evaluate_open_position(CFG, T, st2, p, gate)] == ["expired"]


def test_a_cost_alert_uses_the_cost_threshold():
    alerts = evaluate_alerts(CFG, T, {}, port(0.5, cost=600.0), T - 7200)
    assert [a["kind"] for a in alerts] == ["imbalance_cost"] and alerts[0]["unit"] == "EUR"


def test_open_position_is_checked_in_the_last_30_minutes_before_gate_closure():
    due = qhs_due_for_position_check(CFG, T - 900 - 30 * 60)  # 30 min before the 12:00 QH's gate
    assert T in due and T + 900 not in due
    state = {}
    p = port(None, tradeable_kw=8000.0, net_sold=0.5)             # 2.0 MWh forecast, 0.5 sold
    assert evaluate_open_position(CFG, T, state, p, T - 900 - 31 * 60) == []  # too early
    raised = evaluate_open_position(CFG, T, state, p, T - 900 - 20 * 60)
    assert raised[0]["kind"] == "open_position" and raised[0]["value"] == 1.5
    assert raised[0]["suggested_action"] == "sell 6.0 MW more for 14:00"
    flat = port(None, tradeable_kw=8000.0, net_sold=1.9)
    assert evaluate_open_position(CFG, T, state, flat, T - 900 - 10 * 60)[0]["status"] == "resolved"


def test_a_silent_feed_is_raised_dated_when_it_went_stale_and_resolved_by_the_next_sample():
    feed = {}
    assert feed_sample(CFG, "A", feed, T) == []
    raised = evaluate_stale_feed(CFG, "A", feed, T + 20 * 60)
    assert raised[0]["status"] == "raised" and raised[0]["detected_at"] == "2025-06-08T12:15:00Z"
    assert evaluate_stale_feed(CFG, "A", feed, T + 25 * 60) == []
    resolved = feed_sample(CFG, "A", feed, T + 30 * 60)
    assert resolved[0]["status"] == "resolved" and resolved[0]["alert_id"] == raised[0]["alert_id"]


def test_a_gap_seen_only_in_the_data_gives_the_same_alert_as_one_seen_by_a_tick():
    by_data = {}
    feed_sample(CFG, "A", by_data, T)
    gap = feed_sample(CFG, "A", by_data, T + 40 * 60)
    by_tick = {}
    feed_sample(CFG, "A", by_tick, T)
    tick = evaluate_stale_feed(CFG, "A", by_tick, T + 16 * 60) + feed_sample(CFG, "A", by_tick, T + 40 * 60)
    strip = [{k: v for k, v in a.items() if k != "minutes_to_gate_closure"} for a in gap]
    assert strip == [{k: v for k, v in a.items() if k != "minutes_to_gate_closure"} for a in tick]
    assert [a["status"] for a in gap] == ["raised", "resolved"]


def test_short_gaps_late_samples_and_ended_feeds_raise_nothing():
    feed = {}
    feed_sample(CFG, "A", feed, T)
    assert feed_sample(CFG, "A", feed, T + 10 * 60) == []
    assert feed_sample(CFG, "A", feed, T + 5 * 60) == []                # late, out of order
    assert evaluate_stale_feed(CFG, "A", feed, T + 10 * 60 + 7 * 3600) == []  # the day is over
