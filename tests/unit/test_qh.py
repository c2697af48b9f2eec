"""Quarter-hour and delivery-day arithmetic, pinned by tables with DST rows."""

import datetime as dt

import pytest

from intraday.core import qh, units


@pytest.mark.parametrize("day, n, first, last", [
    (dt.date(2025, 3, 30), 92, "2025-03-29T23:00:00Z", "2025-03-30T21:45:00Z"),
    (dt.date(2025, 6, 8), 96, "2025-06-07T22:00:00Z", "2025-06-08T21:45:00Z"),
    (dt.date(2025, 10, 26), 100, "2025-10-25T22:00:00Z", "2025-10-26T22:45:00Z"),
    (dt.date(2025, 12, 31), 96, "2025-12-30T23:00:00Z", "2025-12-31T22:45:00Z"),
])
def test_a_berlin_delivery_day_has_92_96_or_100_quarter_hours(day, n, first, last):
    qhs = qh.delivery_day_qhs(day)
    assert len(qhs) == n
    assert qh.iso(qhs[0]) == first and qh.iso(qhs[-1]) == last
    assert all(b - a == 900 for a, b in zip(qhs, qhs[1:]))


def test_the_two_0200_hours_of_the_fall_back_day_stay_separate_quarter_hours():
    qhs = qh.delivery_day_qhs(dt.date(2025, 10, 26))
    local = [qh.to_dt(t).astimezone(qh.BERLIN) for t in qhs]
    two_am = [d for d in local if d.hour == 2]
    assert len(two_am) == 8 and len({d.utcoffset() for d in two_am}) == 2


@pytest.mark.parametrize("value, seconds", [
    (1749340800, 1749340800.0),            # seconds labelled ms (the real quirk)
    (1749340800.5, 1749340800.5),
    (1749340800000, 1749340800.0),         # real milliseconds
    (1749340800123.0, 1749340800.123),
    (0, 0.0),
])
def test_epoch_numbers_are_read_as_seconds_or_milliseconds_by_magnitude(value, seconds):
    assert qh.epoch_from_number(value) == pytest.approx(seconds)


def test_a_non_finite_timestamp_is_refused():
    with pytest.raises(ValueError):
        qh.epoch_from_number(float("nan"))


def test_an_hourly_product_splits_into_four_quarter_hours_and_a_misaligned_one_is_refused():
    t = qh.parse_iso("2025-06-08T10:00:00Z")
    assert qh.qh_slices(int(t), int(t) + 3600) == [int(t) + i * 900 for i in range(4)]
    with pytest.raises(ValueError):
        qh.qh_slices(int(t) + 60, int(t) + 960)
    with pytest.raises(ValueError):
        qh.qh_slices(int(t), int(t))


def test_gate_closure_of_the_1200_quarter_hour_is_1145():
    assert qh.iso(qh.gate_closure(int(qh.parse_iso("2025-06-08T12:00:00Z")))) == "2025-06-08T11:45:00Z"


@pytest.mark.parametrize("text, iso", [
    ("2025-06-08 00:00:00+00:00", "2025-06-08T00:00:00Z"),
    ("2025-06-08T02:00:00+02:00", "2025-06-08T00:00:00Z"),
    ("2025-06-08T10:15:00Z", "2025-06-08T10:15:00Z"),
])
def test_iso_instants_with_offsets_become_utc(text, iso):
    assert qh.iso(int(qh.parse_iso(text))) == iso


def test_a_naive_timestamp_is_refused():
    with pytest.raises(ValueError):
        qh.parse_iso("2025-06-08 00:00:00")


def test_berlin_month_bounds_follow_the_civil_calendar_across_dst():
    start, end = qh.berlin_month_bounds(2025, 10)
    assert qh.iso(start) == "2025-09-30T22:00:00Z" and qh.iso(end) == "2025-10-31T23:00:00Z"
    assert (end - start) // 900 == 31 * 96 + 4


def test_floor_qh_and_energy_units():
    assert qh.iso(qh.floor_qh(qh.parse_iso("2025-06-08T10:14:59.9Z"))) == "2025-06-08T10:00:00Z"
    assert units.kw_to_mwh(4000) == 1.0 and units.mw_to_mwh(4) == 1.0


def test_energy_has_one_rule_in_floats_decimals_and_sql():
    from decimal import Decimal

    assert units.kw_to_mwh_exact(Decimal("4000")) == Decimal("1.00000")
    assert units.kw_to_mwh_exact(Decimal("333.3")) == Decimal("0.0833250")
    assert units.kw_to_mwh_sql("a.best_kw") == "a.best_kw * 0.25 / 1000"
    assert eval(units.kw_to_mwh_sql("x"), {"x": 333.3}) == units.kw_to_mwh(333.3)  # same order of operations
    assert units.open_position_mwh(8000.0, 0.5) == 1.5 and units.open_position_mwh(None, 1.0) is None


def test_gate_closure_and_its_inverse_name_the_tradeable_quarter_hours():
    t = qh.parse_iso("2025-06-08T10:00:00Z")
    assert qh.gate_closure(int(t)) == t - 900 and qh.qh_closing_at(t - 900) == t
    # at 09:44:59 the 10:00 QH is still tradeable, at 09:45 (its gate closure) the 10:15 one is next
    assert qh.first_tradeable_qh(t - 901) == t and qh.first_tradeable_qh(t - 900) == t + 900
    assert qh.next_gate_closure_s(t - 901) == (t - 900, t)
    assert qh.next_gate_closure_s(t - 900) == (t, t + 900)  # strictly after now


def test_instants_become_aware_utc_and_naive_ones_are_refused():
    import math

    import pandas as pd

    t = qh.to_dt(1749376800)
    assert t == dt.datetime(2025, 6, 8, 10, tzinfo=dt.UTC)
    for v in (1749376800, 1749376800.0, "2025-06-08T10:00:00Z", "2025-06-08T12:00:00+02:00",
              pd.Timestamp("2025-06-08T12:00:00+02:00"), t.astimezone(qh.BERLIN)):
        got = qh.as_utc(v)
        assert got == t and got.utcoffset() == dt.timedelta(0) and type(got) is dt.datetime, v
    for v in (None, math.nan, pd.NaT):
        assert qh.as_utc(v) is None
    with pytest.raises(ValueError, match="naive"):
        qh.as_utc(dt.datetime(2025, 6, 8, 10))
    with pytest.raises(TypeError):
        qh.as_utc(dt.date(2025, 6, 8))


def test_day_span_is_the_berlin_day_in_utc_with_92_96_100_quarter_hours():
    for day, n, start in ((dt.date(2025, 3, 30), 92, "2025-03-29T23:00:00Z"), (dt.date(2025, 6, 8), 96, "2025-06-07T22:00:00Z"),
                          (dt.date(2025, 10, 26), 100, "2025-10-25T22:00:00Z")):
        lo, hi = qh.day_span(day)
        assert qh.iso(int(lo.timestamp())) == start and (hi - lo) / dt.timedelta(minutes=15) == n
        assert len(qh.delivery_day_qhs(day)) == n
