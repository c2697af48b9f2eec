"""Alerts for the ``imbalance.alerts`` topic: pure, replay-safe, with hysteresis.

Three kinds, each raised once per state change and resolved when the condition clears:

- ``imbalance_volume`` / ``imbalance_cost`` (subject ``PORTFOLIO``): a QH's projected portfolio
  imbalance (its volume, or its cost at the current price) crosses its threshold while the QH can
  still be traded (event time before gate closure); resolved under 80 % of the threshold.
- ``open_position`` (``PORTFOLIO``): from gate closure minus X minutes on, the QH's open position
  (tradeable forecast minus net sold) is not flat (over the volume threshold); resolved when flat.
- ``stale_feed`` (subject: the asset): no live sample for Y minutes of event time; resolved by
  the next sample (a feed silent for over 6 hours is taken as ended, not raised).

An alert about a QH is about a QH that can still be traded: none is raised for a QH whose gate
closure is more than the horizon ahead (default 6 h), and one still open at the QH's gate closure
ends there with status ``expired`` (``detected_at`` = the gate closure, whatever the speed).

"Now" is the replay clock (``replay.clock``, broadcast to every partition as ``derived.clock``)
or the event time of the data, never the wall clock, so a replay at any speed gives the same
alerts. Alert state lives in the processors' tables, so a restarted worker neither repeats nor
forgets an alert; its id hashes (subject, QH, kind, occurrence): the same replay, the same ids.

Alert event (JSON, schema_version 1)::

    {"schema_version": 1, "type": "alert", "alert_id": "3f2a...", "status": "raised"|"resolved"|"expired",
     "kind": "imbalance_volume"|"imbalance_cost"|"open_position"|"stale_feed",
     "severity": "warning"|"critical"|"info", "subject": "PORTFOLIO" or an asset_id,
     "delivery_start": "2025-06-08T14:15:00Z" (for stale_feed: the QH of detection),
     "value": 1.8, "threshold": 1.0, "unit": "MWh"|"EUR"|"min", "imbalance_mwh": 1.8,
     "eur_at_risk": 412.5, "price_eur_mwh": 229.2, "minutes_to_gate_closure": 42.0,
     "suggested_action": "sell 7.2 MW more for 14:15", "detected_at": "2025-06-08T13:18:00Z"}
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from intraday.core.qh import (
    BERLIN,
    QH_S,
    first_tradeable_qh,
    floor_qh,
    gate_closure,
    iso,
    qh_closing_at,
    to_dt,
)
from intraday.core.units import open_position_mwh as qh_open_position_mwh

RESOLVE_FRACTION = 0.8
FEED_ENDED_MIN = 6 * 60


@dataclass(frozen=True)
class AlertConfig:
    imbalance_mwh: float = 1.0
    cost_eur: float = 500.0
    open_position_min: float = 30.0
    stale_feed_min: float = 15.0
    horizon_h: float = 6.0

    @classmethod
    def from_settings(cls, settings: Any) -> AlertConfig:
        return cls(imbalance_mwh=settings.alert_imbalance_mwh, cost_eur=settings.alert_cost_eur,
                   open_position_min=settings.alert_open_position_min,
                   stale_feed_min=settings.alert_stale_feed_min,
                   horizon_h=settings.alert_horizon_h)


def alert_id(subject: str, qh_s: int, kind: str, occurrence: int) -> str:
    return hashlib.sha1(f"{subject}|{qh_s}|{kind}|{occurrence}".encode()).hexdigest()[:16]


def suggested_action(imbalance_mwh: float, qh_s: int) -> str:
    """Long means we will produce more than we sold: sell the difference (MW = MWh x 4)."""
    mw = abs(imbalance_mwh) * 4
    local = to_dt(qh_s).astimezone(BERLIN).strftime("%H:%M")
    verb = "sell" if imbalance_mwh > 0 else "buy"
    return f"{verb} {mw:.1f} MW more for {local}"


def _event(subject: str, qh_s: int, kind: str, occurrence: int, status: str, value: float,
           threshold: float, unit: str, now_s: float, **extra: Any) -> dict[str, Any]:
    severity = "info" if status in ("resolved", "expired") else ("critical" if value > 2 * threshold else "warning")
    return {"schema_version": 1, "type": "alert", "alert_id": alert_id(subject, qh_s, kind, occurrence),
            "status": status, "kind": kind, "severity": severity, "subject": subject,
            "delivery_start": iso(qh_s), "value": value, "threshold": threshold, "unit": unit,
            "minutes_to_gate_closure": (gate_closure(qh_s) - now_s) / 60.0,
            "detected_at": iso(int(now_s)), **extra}


def _transition(al: dict[str, Any], kind: str, raise_if: bool, resolve_if: bool) -> tuple[str, int] | None:
    active, occurrence = al.get(kind, [False, 0])
    if not active and raise_if:
        al[kind] = [True, occurrence + 1]
        return "raised", occurrence + 1
    if active and resolve_if:
        al[kind] = [False, occurrence]
        return "resolved", occurrence
    return None


def expire_alerts(qh_s: int, state: dict[str, Any], port: dict[str, Any]) -> list[dict[str, Any]]:
    """Every alert of the QH still open at its gate closure ends there (status ``expired``)."""
    gate = gate_closure(qh_s)
    al = state.setdefault("al", {})
    out = []
    for kind in sorted(al):
        active, occurrence = al[kind]
        if not active:
            continue
        al[kind] = [False, occurrence]
        value = open_position_mwh(port) if kind == "open_position" else port.get("imbalance_mwh")
        price = port.get("imbalance_price_eur_mwh")
        out.append(_event("PORTFOLIO", qh_s, kind, occurrence, "expired", abs(value) if value is not None else 0.0,
                          0.0, "EUR" if kind == "imbalance_cost" else "MWh", gate, imbalance_mwh=value,
                          eur_at_risk=abs(value * price) if value is not None and price is not None else None,
                          price_eur_mwh=price, suggested_action="none"))
    return out


def in_horizon(config: AlertConfig, qh_s: int, now_s: float) -> bool:
    """The QH's gate closure lies within the alert horizon ahead of ``now_s`` (and is not past)."""
    gate = gate_closure(qh_s)
    return now_s < gate and gate - now_s <= config.horizon_h * 3600


def evaluate_alerts(config: AlertConfig, qh_s: int, state: dict[str, Any], port: dict[str, Any],
                    now_s: float | None) -> list[dict[str, Any]]:
    """Imbalance alerts raised or resolved by the QH's new portfolio row; updates ``state['al']``.
    At or after the QH's gate closure open alerts expire; beyond the horizon none is raised."""
    imbalance = port.get("imbalance_mwh")
    if imbalance is None or now_s is None:
        return []
    if now_s >= gate_closure(qh_s):
        return expire_alerts(qh_s, state, port)
    tradeable = in_horizon(config, qh_s, now_s)
    cost = port.get("imbalance_cost_eur")
    checks = [("imbalance_volume", abs(imbalance), config.imbalance_mwh, "MWh")]
    if cost is not None:
        checks.append(("imbalance_cost", cost, config.cost_eur, "EUR"))
    al = state.setdefault("al", {})
    out = []
    for kind, value, threshold, unit in checks:
        if threshold <= 0:
            continue
        t = _transition(al, kind, tradeable and value > threshold, value < threshold * RESOLVE_FRACTION)
        if t is None:
            continue
        status, occurrence = t
        out.append(_event("PORTFOLIO", qh_s, kind, occurrence, status, value, threshold, unit, now_s,
                          imbalance_mwh=imbalance, eur_at_risk=abs(cost) if cost is not None else None,
                          price_eur_mwh=port.get("imbalance_price_eur_mwh"),
                          suggested_action=suggested_action(imbalance, qh_s) if status == "raised" else "none"))
    return out


def open_position_mwh(port: dict[str, Any]) -> float | None:
    """Tradeable forecast (MWh) minus net sold: what is still to sell (+) or buy back (-)."""
    return qh_open_position_mwh(port.get("tradeable_forecast_kw"), port.get("net_sold_mwh"))


def qhs_due_for_position_check(config: AlertConfig, now_s: float) -> range:
    """QHs whose gate closure lies in ``(now, now + X min]``: the desk must be flat by then."""
    first = first_tradeable_qh(now_s)
    last = floor_qh(qh_closing_at(now_s + config.open_position_min * 60))
    return range(first, last + 1, QH_S)


def evaluate_open_position(config: AlertConfig, qh_s: int, state: dict[str, Any], port: dict[str, Any],
                           now_s: float) -> list[dict[str, Any]]:
    """The open-position alert of a QH inside its last X minutes before gate closure."""
    threshold = config.imbalance_mwh
    open_mwh = open_position_mwh(port)
    if open_mwh is None or threshold <= 0:
        return []
    gate = gate_closure(qh_s)
    if now_s >= gate:
        return expire_alerts(qh_s, state, port)
    in_window = gate - config.open_position_min * 60 <= now_s < gate
    al = state.setdefault("al", {})
    t = _transition(al, "open_position", in_window and abs(open_mwh) > threshold,
                    abs(open_mwh) < threshold * RESOLVE_FRACTION)
    if t is None:
        return []
    status, occurrence = t
    price = port.get("imbalance_price_eur_mwh")
    return [_event("PORTFOLIO", qh_s, "open_position", occurrence, status, abs(open_mwh), threshold, "MWh",
                   now_s, imbalance_mwh=open_mwh,
                   eur_at_risk=abs(open_mwh * price) if price is not None else None, price_eur_mwh=price,
                   suggested_action=suggested_action(open_mwh, qh_s) if status == "raised" else "none")]


def _stale_event(config: AlertConfig, asset_id: str, feed: dict[str, Any], status: str, occurrence: int,
                 silent_min: float, at_s: float) -> dict[str, Any]:
    last = feed["last"]
    ev = _event(asset_id, int(last // QH_S) * QH_S, "stale_feed", occurrence, status, silent_min,
                config.stale_feed_min, "min", at_s, imbalance_mwh=None, eur_at_risk=None, price_eur_mwh=None,
                suggested_action=(f"check the live feed of {asset_id}: silent since {iso(int(last))}"
                                  if status == "raised" else "none"))
    ev["delivery_start"] = iso(int(at_s // QH_S) * QH_S)
    return ev


def evaluate_stale_feed(config: AlertConfig, asset_id: str, feed: dict[str, Any], now_s: float) -> list[dict[str, Any]]:
    """On a clock tick: is the feed (``{"last": last sample time, "al": {...}}``) silent too long?

    The raise is dated when the feed *became* stale (last sample + Y minutes), so a tick that
    comes late (a fast replay) gives the same alert as one on time.
    """
    last = feed.get("last")
    if last is None or config.stale_feed_min <= 0:
        return []
    silent_min = (now_s - last) / 60.0
    al = feed.setdefault("al", {})
    # a feed silent for more than FEED_ENDED_MIN has ended (e.g. the replayed day is over): it is
    # not raised as stale then, only an alert already open stays open until data returns
    t = _transition(al, "stale_feed", config.stale_feed_min < silent_min <= FEED_ENDED_MIN, False)
    if t is None:
        return []
    return [_stale_event(config, asset_id, feed, "raised", t[1], config.stale_feed_min,
                         last + config.stale_feed_min * 60)]


def feed_sample(config: AlertConfig, asset_id: str, feed: dict[str, Any], ts: float) -> list[dict[str, Any]]:
    """A live sample arrived at ``ts``: resolve an open stale alert, or report a gap that was
    longer than Y minutes as raised-and-resolved (whether or not a tick saw it in between)."""
    last = feed.get("last")
    if last is not None and ts <= last:
        return []  # late or repeated sample: the feed was not silent
    out: list[dict[str, Any]] = []
    if last is not None and config.stale_feed_min > 0:
        gap_min = (ts - last) / 60.0
        al = feed.setdefault("al", {})
        if gap_min > config.stale_feed_min and gap_min <= FEED_ENDED_MIN:
            t = _transition(al, "stale_feed", True, False)
            if t is not None:
                out.append(_stale_event(config, asset_id, feed, "raised", t[1], config.stale_feed_min,
                                        last + config.stale_feed_min * 60))
        t = _transition(al, "stale_feed", False, True)
        if t is not None:
            out.append(_stale_event(config, asset_id, feed, "resolved", t[1], gap_min, ts))
    feed["last"] = ts
    return out
