"""The processors' pure core (domain.md rules over typed facts) and the shell's guarantees,
without a broker: each silent path of the first wave has a test here that fails on it."""

from __future__ import annotations

import asyncio
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intraday.core.qh import iso, qh_slices
from intraday.processing import shell
from intraday.processing.state import assets as asset_state
from intraday.processing.state import quarter_hours as qh_state
from intraday.processing.state import trades as trade_state
from intraday.processing.state import wire

T = 1_749_384_000  # 2025-06-08T12:00:00Z


def forecast(version_s: float, rows: dict[int, float], asset: str = "A") -> wire.Forecast:
    return wire.Forecast(schema_version=1, asset_id=asset, version=iso(int(version_s)),
                         delivery_start=[iso(q) for q in rows], power_kw=list(rows.values()))


def trade(tid: str, start: int, minutes: int, price: float, mw: float, side: str | None = "SELL", *,
          executed: int | None = None, book: str = "private", file: str = "exchange/Private_Trades-20250608-"
          "20250608T100000000Z.csv", line: int = 3) -> wire.Trade:
    ex = iso(executed if executed is not None else start - 3600)
    return wire.Trade(schema_version=1, book=book, trade_id=tid, side=side, delivery_start=iso(start),
                      delivery_end=iso(start + minutes * 60), execution_time=ex, price_eur_mwh=price,
                      volume_mw=mw, event_time=ex, source_file=file, source_line=line)


# ----------------------------------------------------------------------------- section 1

def test_the_domain_example_latest_1200_tradeable_1145():
    e = None
    for v, kw in ((T - 1800, 3.0), (T - 900, 4.0), (T, 5.0)):
        e = asset_state.fold_forecast(e, v, T, kw)
    assert (e.lv, e.lk, e.tv, e.tk) == (T, 5.0, T - 900, 4.0)


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(8))))
def test_latest_and_tradeable_do_not_depend_on_arrival_order(order):
    versions = [(T - 900 * i, float(i)) for i in range(8)]
    e = None
    for i in order:
        e = asset_state.fold_forecast(e, versions[i][0], T, versions[i][1])
    assert (e.lv, e.lk, e.tv, e.tk, e.n) == (T, 0.0, T - 900, 1.0, 8)


# ----------------------------------------------------------------------------- section 2

def test_best_of_infeed_prefers_final_then_live_then_redispatch_then_forecast():
    fc = asset_state.fold_forecast(None, T - 900, T, 100.0)
    o = asset_state.apply_flag(None, T + 86400, 2, True)
    assert (asset_state.asset_snap("A", T, fc, o).best_kw, asset_state.asset_snap("A", T, fc, o).best_source) == (0.0, "redispatch")
    o = asset_state.apply_live(o, T + 60, -2.0, "r1")
    o = asset_state.apply_live(o, T + 120, 4.0, "r2")
    assert (asset_state.asset_snap("A", T, fc, o).best_kw, asset_state.asset_snap("A", T, fc, o).best_source) == (1.0, "live")
    o = asset_state.apply_final(o, T + 86400, 5, 7.5)
    s = asset_state.asset_snap("A", T, fc, o)
    assert (s.best_kw, s.best_source, s.redispatched, s.live_samples) == (7.5, "final", True, 2)
    assert asset_state.asset_snap("A", T, fc, None).best_source == "forecast"


def test_an_older_dso_file_or_a_resent_sample_never_replaces_the_newer_and_changes_no_rev():
    o = asset_state.apply_final(None, 200.0, 1, 5.0)
    assert asset_state.apply_final(o, 100.0, 9, 1.0) is None  # older file delivered late
    assert asset_state.apply_final(o, 200.0, 1, 5.0) is None  # the same row again
    o = asset_state.apply_live(o, T + 60, 3.0, "b")
    assert asset_state.apply_live(o, T + 60, 9.0, "a") is None  # an older copy of the sample
    newer = asset_state.apply_live(o, T + 60, 4.0, "c")  # a re-sent sample of a later row replaces it
    assert newer.live[T + 60][0] == 4.0 and newer.n == o.n + 1


# ----------------------------------------------------------------------------- section 3

def _book(trades: list[wire.Trade]) -> trade_state.TradeBook:
    tb = trade_state.TradeBook()
    for t in trades:
        tb.add(t.book, t.trade_id, trade_state.trade_occurrence(t))
    return tb


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-500, 500), st.floats(0.1, 50), st.sampled_from(["BUY", "SELL"]),
                          st.sampled_from([15, 60])), min_size=1, max_size=25), st.randoms())
def test_running_sums_equal_the_batch_formulas_after_every_trade_in_any_order(rows, rnd):
    trades = [trade(f"T{i}", T, m, p, mw, side) for i, (p, mw, side, m) in enumerate(rows)]
    rnd.shuffle(trades)
    tb = trade_state.TradeBook()
    for n, t in enumerate(trades, 1):
        tb.add(t.book, t.trade_id, trade_state.trade_occurrence(t))
        row = trade_state.trading_row("private", T, [tb.partial("private", T, 0)])
        seen = trades[:n]
        sold = math.fsum(t.volume_mw for t in seen if t.side == "SELL") * 0.25
        bought = math.fsum(t.volume_mw for t in seen if t.side == "BUY") * 0.25
        assert row["trades"] == n
        assert row["net_mwh"] == pytest.approx(sold - bought, abs=1e-9)
        assert row["revenue_eur"] == pytest.approx(math.fsum(
            (1 if t.side == "SELL" else -1) * t.volume_mw * 0.25 * t.price_eur_mwh for t in seen), abs=1e-6)
        assert row["vwap_eur_mwh"] == pytest.approx(math.fsum(t.price_eur_mwh * t.volume_mw for t in seen)
                                                    / math.fsum(t.volume_mw for t in seen), abs=1e-9)


def test_a_resent_trade_id_with_another_delivery_period_counts_once_per_book():
    """Regression: the first wave recognised a duplicate per book and delivery hour, so a re-sent
    id with another period counted twice. The first occurrence in file order counts."""
    first = trade("X1", T, 15, 50.0, 10.0, file="exchange/Private_Trades-20250608-20250608T080000000Z.csv")
    again = trade("X1", T + 7200, 60, 80.0, 3.0, file="exchange/Private_Trades-20250608-20250608T090000000Z.csv")
    for order in ([first, again], [again, first], [first, again, again, first]):
        tb = _book(order)
        assert tb.partial("private", T, 0).trades == 1
        assert tb.partial("private", T + 7200, 0).trades == 0
    # the rev of the QH the id moved away from still grows: a stale partial cannot win downstream
    assert _book([again, first]).partial("private", T + 7200, 0).rev == 2


def test_index_windows_include_t_minus_3h_and_exclude_t():
    tb = _book([trade("P1", T, 15, 10.0, 1.0, None, executed=T - 3 * 3600, book="public"),
                trade("P2", T, 15, 20.0, 1.0, None, executed=T - 3600, book="public"),
                trade("P3", T, 15, 90.0, 1.0, None, executed=T, book="public")])
    row = trade_state.trading_row("public", T, [tb.partial("public", T, 0)])
    assert (row["idx_full_eur_mwh"], row["idx_3h_eur_mwh"], row["idx_1h_eur_mwh"]) == (40.0, 15.0, 20.0)
    assert row["revenue_eur"] is None and row["net_mwh"] == 0


def test_a_delivery_range_to_2099_is_refused_not_sliced_into_millions_of_quarter_hours():
    with pytest.raises(ValueError, match="longer than 48 h"):
        trade_state.trade_occurrence(wire.Trade(schema_version=1, book="private", trade_id="Z", side="BUY",
                                         delivery_start=iso(T), delivery_end="2099-01-01T00:00:00Z",
                                         execution_time=iso(T), price_eur_mwh=1.0, volume_mw=1.0))
    with pytest.raises(ValueError, match="longer than 48 h"):
        qh_slices(T, 4_070_908_800)


# ----------------------------------------------------------------------------- section 4

def _bundle(qh: int, rev: int, best: float, tradeable: float | None = 100.0, redispatched: bool = False,
            asset: str = "A") -> wire.AssetQhBundle:
    return wire.AssetQhBundle(schema_version=1, qh=qh, known_at=float(qh), assets=[wire.AssetSnap(
        asset_id=asset, qh=qh, latest_version=None, latest_kw=best, tradeable_version=None,
        tradeable_kw=tradeable, best_kw=best, best_source="live", live_kw=best, live_samples=1, final_kw=None,
        redispatched=redispatched, exists=True, rev=rev)])


def test_a_stale_snapshot_delivered_after_a_newer_one_never_brings_old_values_back():
    st_ = qh_state.step_qh(None, _bundle(T, 5, 500.0))
    assert qh_state.step_qh(st_, _bundle(T, 3, 300.0)) is None
    assert qh_state.step_qh(st_, _bundle(T, 6, 600.0)).assets["A"].best_kw == 600.0


def test_prices_short_pays_unterdeckt_long_pays_ueberdeckt_else_estimate_else_missing():
    def price(kind: str, published: str, line: int, **values) -> wire.ImbalancePrice:
        return wire.ImbalancePrice(schema_version=1, kind=kind, delivery_start=iso(T), published_at=published,
                                   source_line=line, **values)

    s = qh_state.QhState()
    assert qh_state.imbalance_price(s, 1.0) == (None, "missing")
    s = qh_state.step_qh(s, price("estimate", "2025-06-08T10:00:00Z", 2, price_eur_mwh=40.0))
    s = qh_state.step_qh(s, price("estimate", "2025-06-08T09:00:00Z", 9, price_eur_mwh=10.0)) or s  # older file
    assert qh_state.imbalance_price(s, -1.0) == (40.0, "estimate")
    s = qh_state.step_qh(s, price("final", "2025-06-09T10:00:00Z", 2, unterdeckt_eur_mwh=70.0, ueberdeckt_eur_mwh=60.0))
    # a newer final file without the long price does not hide the older final value
    s = qh_state.step_qh(s, price("final", "2025-06-10T10:00:00Z", 2, unterdeckt_eur_mwh=75.0))
    assert qh_state.imbalance_price(s, -1.0) == (75.0, "final")
    assert qh_state.imbalance_price(s, 0.0) == (60.0, "final")


def test_portfolio_counts_members_only_and_a_redispatched_asset_carries_no_imbalance():
    s = qh_state.step_qh(None, _bundle(T, 1, 4000.0, tradeable=2000.0))
    s = qh_state.step_qh(s, _bundle(T, 1, 0.0, tradeable=8000.0, redispatched=True, asset="B"))
    s = qh_state.step_qh(s, _bundle(T, 1, 999.0, asset="OUT"))
    port, rows, _ = qh_state.qh_results(T, s, frozenset({"A", "B"}))
    assert port["best_of_infeed_kw"] == 4000.0 and port["tradeable_forecast_kw"] == 10000.0
    by = {r["asset_id"]: r for r in rows}
    assert by["B"]["imbalance_mwh"] == 0.0 and by["B"]["cost_eur"] == 0.0 and by["B"]["position_mwh"] == 2.0
    assert by["A"]["imbalance_mwh"] == pytest.approx(0.5)
    # domain.md 4: B counts as delivering its position (2.0 MWh): 1.0 + 2.0 - 0 sold
    assert port["balanced_mwh"] == pytest.approx(2.0)
    assert port["imbalance_mwh"] == pytest.approx(3.0)
    s = qh_state.step_qh(s, _bundle(T, 2, 0.0, tradeable=None, redispatched=True, asset="B"))
    port, _, _ = qh_state.qh_results(T, s, frozenset({"A", "B"}))
    assert port["balanced_mwh"] == 0.0 and port["imbalance_mwh"] == pytest.approx(1.0)  # no position, none


def test_the_newest_crm_file_decides_the_portfolio_whatever_the_batches():
    m = qh_state.step_membership(None, "2025-06-01T00:00:00Z", ["A"])
    m = qh_state.step_membership(m, "2025-06-01T00:00:00Z", ["B"])  # the same file, a later batch
    assert m.members == {"A", "B"}
    m = qh_state.step_membership(m, "2025-06-07T00:00:00Z", ["C"])
    assert qh_state.step_membership(m, "2025-06-01T00:00:00Z", ["D"]) is None  # an older file, late
    assert m.members == {"C"}


# ----------------------------------------------------------------------------- decoding

def test_a_record_with_a_wrong_field_type_is_poison_also_on_derived_topics_and_contracts():
    """Regression: such a record raised outside the per-record guard and Faust acked the batch."""
    bad = [b'{"schema_version": 1, "type": "contract", "file_time": 5, "asset_id": "A"}',
           b'{"schema_version": 1, "type": "asset_qh", "qh": "soon", "assets": []}',
           b'{"schema_version": 1, "type": "trading_partial", "book": "public", "qh": 1, "part": 0}',
           b'{"schema_version": 7, "type": "clock", "now": "x"}', b"\xff\xfe", b"[1, 2]", b"null", b'"text"']
    for raw in bad:
        with pytest.raises(wire.PoisonMessage):
            wire.decode(raw)


def test_a_batch_message_is_its_events_in_order():
    raw = msgspec.json.encode({"schema_version": 2, "type": "batch", "events": [
        {"schema_version": 1, "type": "clock", "now": "2025-06-08T00:00:00Z"},
        {"schema_version": 1, "type": "clock", "now": "2025-06-08T00:01:00Z"}]})
    assert [e.now for e in wire.decode(raw)] == ["2025-06-08T00:00:00Z", "2025-06-08T00:01:00Z"]


# ----------------------------------------------------------------------------- shell

def test_the_watermark_ignores_the_clock_and_waits_for_the_slowest_input():
    """Regression: retention moved with the replay clock, which runs far ahead of a busy data
    partition, and the day's own records were refused as too old."""
    wm = shell.Watermark(4 * 86400)
    clock = wire.Clock(schema_version=1, now=iso(T + 14 * 86400))
    assert wire.event_time_s(clock) is None
    wm.saw("vpp.forecasts", 0, T)
    wm.saw("dso.final-production", 0, T + 14 * 86400)  # a file dated two weeks after the day
    assert wm.value() == T and not wm.too_old(T - 3 * 86400)
    wm.saw("vpp.forecasts", 0, T + 10 * 86400)
    assert wm.too_old(T) and not wm.too_old(T + 7 * 86400)


def test_a_failed_result_send_is_sent_again_before_the_state_is_written():
    """Regression: a failed send was ignored, the state written and the offsets committed."""
    sent = []

    async def run():
        loop = asyncio.get_running_loop()

        def send_soon(name, key, value, partition):
            fut = loop.create_future()
            if len(sent) == 0:
                fut.set_exception(RuntimeError("broker said no"))
            else:
                fut.set_result(None)
            sent.append(value)
            return fut

        em = shell.Emitter(send_soon, 4)
        em.send("derived.qh-results", "k", {"a": 1})
        await em.confirm()
        return em

    em = asyncio.run(run())
    assert len(sent) == 2 and em.failed_sends == 1


def test_results_the_broker_never_confirms_end_the_worker_before_the_batch_is_acked(monkeypatch):
    class Died(Exception):
        pass

    def die(reason):
        raise Died(reason)

    monkeypatch.setattr(shell, "die", die)

    async def run():
        loop = asyncio.get_running_loop()
        em = shell.Emitter(lambda *a: loop.create_future(), 4, confirm_timeout_s=0.2)  # never resolves
        em.send("derived.qh-results", "k", {"a": 1})
        await em.confirm()

    with pytest.raises(Died, match="not confirmed"):
        asyncio.run(run())


def test_every_partition_gets_the_barrier_of_every_origin():
    from intraday.contract import topics

    origins = topics.expected_origins(topics.QH_RESULTS, 2)
    assert origins == {"qh:0", "qh:1"}
    assert {"source", "assets:vpp.forecasts:0", "assets:derived.clock:1"} <= topics.expected_origins(
        topics.dlq(topics.FORECASTS), 2)


def test_batch_records_keep_every_event_in_order_under_the_size_bounds():
    from intraday.contract.events import batch_records

    values = [msgspec.json.encode({"schema_version": 1, "type": "clock", "now": str(i) * (i % 50)})
              for i in range(3000)]
    records = batch_records(values, 500, max_bytes=20_000)
    assert all(len(r) <= 20_000 + 100 for r in records)
    assert [e.now for r in records for e in wire.decode(r)] == [str(i) * (i % 50) for i in range(3000)]
    assert batch_records(values[:1], 500) == values[:1]  # one event: a version-1 record
