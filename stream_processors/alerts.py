"""Imbalance alerts for the ``imbalance.alerts`` topic: pure, replay-safe, with hysteresis.

An alert is raised when a QH's projected portfolio imbalance (its volume, or its cost at the
current price) crosses its threshold while the QH can still be traded (event time before gate
closure), and resolved when it falls back under 80 % of the threshold. The alert state lives in
the QH's state (``al``), so a restarted worker neither repeats nor forgets an alert, and its id is
a hash of (subject, QH, kind, occurrence number): the same replay gives the same ids.

Alert event (JSON, schema_version 1)::

    {"schema_version": 1, "type": "alert", "alert_id": "3f2a...", "status": "raised"|"resolved",
     "kind": "imbalance_volume"|"imbalance_cost", "severity": "warning"|"critical",
     "subject": "PORTFOLIO", "delivery_start": "2025-06-08T14:15:00Z",
     "value": 1.8, "threshold": 1.0, "unit": "MWh"|"EUR", "imbalance_mwh": 1.8,
     "eur_at_risk": 412.5, "price_eur_mwh": 229.2, "minutes_to_gate_closure": 42.0,
     "suggested_action": "sell 7.2 MW more for 14:15", "detected_at": "2025-06-08T13:18:00Z"}
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from intraday.qh import BERLIN, GATE_CLOSURE_S, iso, to_dt

RESOLVE_FRACTION = 0.8


@dataclass(frozen=True)
class AlertConfig:
    imbalance_mwh: float = 1.0
    cost_eur: float = 500.0

    @classmethod
    def from_settings(cls, settings: Any) -> AlertConfig:
        return cls(imbalance_mwh=settings.alert_imbalance_mwh, cost_eur=settings.alert_cost_eur)


def alert_id(subject: str, qh_s: int, kind: str, occurrence: int) -> str:
    return hashlib.sha1(f"{subject}|{qh_s}|{kind}|{occurrence}".encode()).hexdigest()[:16]


def suggested_action(imbalance_mwh: float, qh_s: int) -> str:
    """Long means we will produce more than we sold: sell the difference (MW = MWh x 4)."""
    mw = abs(imbalance_mwh) * 4
    local = to_dt(qh_s).astimezone(BERLIN).strftime("%H:%M")
    verb = "sell" if imbalance_mwh > 0 else "buy"
    return f"{verb} {mw:.1f} MW more for {local}"


def evaluate_alerts(config: AlertConfig, qh_s: int, state: dict[str, Any], port: dict[str, Any],
                    known_at: float | None) -> list[dict[str, Any]]:
    """Alerts raised or resolved by the QH's new portfolio row; updates ``state['al']``."""
    imbalance = port.get("imbalance_mwh")
    if imbalance is None or known_at is None:
        return []
    gate = qh_s - GATE_CLOSURE_S
    tradeable = known_at < gate
    cost = port.get("imbalance_cost_eur")
    checks = [("imbalance_volume", abs(imbalance), config.imbalance_mwh, "MWh")]
    if cost is not None:
        checks.append(("imbalance_cost", cost, config.cost_eur, "EUR"))
    al = state.setdefault("al", {})
    out = []
    for kind, value, threshold, unit in checks:
        if threshold <= 0:
            continue
        active, occurrence = al.get(kind, [False, 0])
        if not active and tradeable and value > threshold:
            active, occurrence = True, occurrence + 1
            status = "raised"
        elif active and value < threshold * RESOLVE_FRACTION:
            active = False
            status = "resolved"
        else:
            continue
        al[kind] = [active, occurrence]
        severity = "critical" if value > 2 * threshold else "warning"
        out.append({
            "schema_version": 1, "type": "alert", "alert_id": alert_id("PORTFOLIO", qh_s, kind, occurrence),
            "status": status, "kind": kind, "severity": severity if status == "raised" else "info",
            "subject": "PORTFOLIO", "delivery_start": iso(qh_s), "value": value, "threshold": threshold,
            "unit": unit, "imbalance_mwh": imbalance, "eur_at_risk": abs(cost) if cost is not None else None,
            "price_eur_mwh": port.get("imbalance_price_eur_mwh"),
            "minutes_to_gate_closure": (gate - known_at) / 60.0,
            "suggested_action": suggested_action(imbalance, qh_s) if status == "raised" else "none",
            "detected_at": iso(int(known_at))})
    return out
