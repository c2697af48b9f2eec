"""Section 3 of domain.md: trade occurrences, the first of each trade id per book counting once, and the trading figures per book and QH."""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from intraday.core.qh import HOUR_S, QH_S, iso, parse_iso, qh_slices
from intraday.core.units import mw_to_mwh
from intraday.processing.state.assets import rank
from intraday.processing.state.wire import Trade, TradingPartial

# ---------------------------------------------------------------------------------------------
# Section 3: trades. An occurrence (a row of a trade file) is a fact; per book and trade id the
# first occurrence in file order counts (a re-sent id counts once, whatever its delivery period).

class TradeOcc(msgspec.Struct, array_like=True, frozen=True):
    rank: str          # file time | file | line: the smallest is the first occurrence
    qh0: int
    slices: int
    side: str | None   # BUY / SELL (private), None (public)
    mw: float
    price: float
    execution_s: float
    known_s: float


def trade_occurrence(e: Trade) -> TradeOcc:
    start, end = int(parse_iso(e.delivery_start)), int(parse_iso(e.delivery_end))
    qhs = qh_slices(start, end)
    if e.book not in ("private", "public"):
        raise ValueError(f"unknown book {e.book!r}")
    side = e.side if e.book == "private" else None
    if e.book == "private" and side not in ("BUY", "SELL"):
        raise ValueError(f"unknown side {e.side!r}")
    if not (e.volume_mw > 0 and math.isfinite(e.volume_mw) and math.isfinite(e.price_eur_mwh)):
        raise ValueError("volume must be positive and price finite")
    execution = parse_iso(e.execution_time)
    return TradeOcc(rank(e.source_file, e.source_line), start, len(qhs), side, float(e.volume_mw),
                    float(e.price_eur_mwh), execution, parse_iso(e.event_time) if e.event_time else execution)


class TradeBook:
    """The trades one partition owns: per (book, id) every occurrence seen; per (book, QH) the ids
    that touch it. Derived from the set of occurrences only (fold order does not matter)."""

    def __init__(self) -> None:
        self.occ: dict[tuple[str, str], tuple[TradeOcc, ...]] = {}
        self.touching: dict[tuple[str, int], set[str]] = {}

    def add(self, book: str, trade_id: str, o: TradeOcc) -> list[tuple[str, int]]:
        """Fold an occurrence in; the (book, QH) keys whose partial may have changed."""
        key = (book, trade_id)
        seen = self.occ.get(key, ())
        if o in seen:
            return []
        self.occ[key] = tuple(sorted((*seen, o), key=lambda x: x.rank))
        changed = set()
        for x in self.occ[key]:
            for i in range(x.slices):
                qh = x.qh0 + i * QH_S
                self.touching.setdefault((book, qh), set()).add(trade_id)
                changed.add((book, qh))
        return sorted(changed)

    def partial(self, book: str, qh_s: int, part: int) -> TradingPartial:
        """The sums of domain.md 3 over this partition's trades whose counted occurrence covers
        the QH, recomputed from the state with fsum (order-free, idempotent)."""
        ids = self.touching.get((book, qh_s), ())
        rows = []
        rev = 0
        for tid in ids:
            occs = self.occ[(book, tid)]
            rev += len(occs)
            first = occs[0]
            if first.qh0 <= qh_s < first.qh0 + first.slices * QH_S:
                rows.append(first)
        known = max((o.known_s for o in rows), default=None)
        fsum = math.fsum
        pv = fsum(o.price * o.mw for o in rows)
        v = fsum(o.mw for o in rows)
        if book == "private":
            sold = fsum(o.mw for o in rows if o.side == "SELL")
            bought = fsum(o.mw for o in rows if o.side == "BUY")
            revenue = fsum(mw_to_mwh(o.mw if o.side == "SELL" else -o.mw) * o.price for o in rows)
            idx = [0.0] * 6
        else:  # market indices (domain.md 3): full = every slice; 3h / 1h by execution before t
            sold = bought = revenue = 0.0
            h3 = [o for o in rows if qh_s - 3 * HOUR_S <= o.execution_s < qh_s]
            h1 = [o for o in h3 if qh_s - HOUR_S <= o.execution_s]
            idx = [pv, v, fsum(o.price * o.mw for o in h3), fsum(o.mw for o in h3),
                   fsum(o.price * o.mw for o in h1), fsum(o.mw for o in h1)]
        return TradingPartial(schema_version=1, book=book, qh=qh_s, part=part, rev=rev, trades=len(rows),
                              sold_mw=sold, bought_mw=bought, revenue_eur=revenue, pv=pv, v=v, idx=idx,
                              known_at=known, event_time=iso(int(known)) if known is not None else None)

    def forget_before(self, cutoff_s: float) -> None:
        """Drop trades whose every slice lies before ``cutoff_s`` (retention)."""
        for key, occs in list(self.occ.items()):
            if all(o.qh0 + o.slices * QH_S <= cutoff_s for o in occs):
                del self.occ[key]
        for key in [k for k in self.touching if k[1] < cutoff_s]:
            del self.touching[key]


def _vwap(pv: float, v: float) -> float | None:
    return pv / v if v else None


def trading_row(book: str, qh_s: int, partials: Iterable[TradingPartial]) -> dict:
    """trading_qh row of a (book, QH) from the partials of every trade partition (domain.md 3)."""
    ps = list(partials)
    sold = math.fsum(p.sold_mw for p in ps)
    bought = math.fsum(p.bought_mw for p in ps)
    private = book == "private"

    def s(i: int) -> float:
        return math.fsum(p.idx[i] for p in ps)

    return {"book": book, "qh": qh_s, "trades": sum(p.trades for p in ps),
            "sold_mwh": mw_to_mwh(sold), "bought_mwh": mw_to_mwh(bought), "net_mwh": mw_to_mwh(sold - bought),
            "revenue_eur": math.fsum(p.revenue_eur for p in ps) if private else None,
            "vwap_eur_mwh": _vwap(math.fsum(p.pv for p in ps), math.fsum(p.v for p in ps)),
            "idx_full_eur_mwh": None if private else _vwap(s(0), s(1)),
            "idx_3h_eur_mwh": None if private else _vwap(s(2), s(3)),
            "idx_1h_eur_mwh": None if private else _vwap(s(4), s(5))}
