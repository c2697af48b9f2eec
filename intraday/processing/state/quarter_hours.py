"""Section 4 of domain.md: a quarter-hour's imbalance from asset snapshots, trading partials, prices and the portfolio membership."""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from intraday.core.qh import parse_iso
from intraday.core.units import kw_to_mwh
from intraday.processing.state.trades import trading_row
from intraday.processing.state.wire import (
    V1,
    AssetQhBundle,
    AssetSnap,
    ImbalancePrice,
    TradingPartial,
    event_time_s,
)

# ---------------------------------------------------------------------------------------------
# Section 4: a quarter-hour's imbalance, from asset snapshots, trading partials, prices and the
# portfolio membership. Each slot keeps the snapshot with the highest rev.


class PriceCell(msgspec.Struct, array_like=True, frozen=True):
    published_s: float
    line: int
    price: float


class AssetSlot(msgspec.Struct, array_like=True, frozen=True):
    """What a QH keeps of an asset's snapshot (compact: the QH state is written per batch)."""
    rev: int
    best_kw: float | None
    latest_kw: float | None
    tradeable_kw: float | None
    redispatched: bool
    exists: bool


def slot_of(s: AssetSnap) -> AssetSlot:
    return AssetSlot(s.rev, s.best_kw, s.latest_kw, s.tradeable_kw, s.redispatched, s.exists)


class QhState(msgspec.Struct, array_like=True, frozen=True):
    assets: dict[str, AssetSlot] = {}
    trading: dict[str, TradingPartial] = {}   # "book|part" -> partial
    est: PriceCell | None = None
    short: PriceCell | None = None   # final reBAP unterdeckt
    long: PriceCell | None = None    # final reBAP ueberdeckt
    known_at: float | None = None
    alerts: dict[str, tuple[bool, int]] = {}


def _newer_price(old: PriceCell | None, published_s: float, line: int) -> bool:
    return old is None or (published_s, line) > (old.published_s, old.line)


def _later(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def step_qh(state: QhState | None, e: V1) -> QhState | None:
    """Fold an asset bundle, a trading partial or a price into a QH; None when nothing changed.
    Prices (domain.md 4): per column the newest final row with a value, the newest estimate."""
    st = state or QhState()
    if isinstance(e, AssetQhBundle):
        assets = None
        for s in e.assets:
            old = st.assets.get(s.asset_id)
            if old is not None and old.rev > s.rev:
                continue  # a stale snapshot delivered late
            new = slot_of(s)
            if old == new:
                continue
            assets = assets if assets is not None else dict(st.assets)
            assets[s.asset_id] = new
        if assets is None:
            return None
        return msgspec.structs.replace(st, assets=assets, known_at=_later(st.known_at, e.known_at))
    if isinstance(e, TradingPartial):
        slot = f"{e.book}|{e.part}"
        old = st.trading.get(slot)
        if old is not None and (old.rev > e.rev or old == e):
            return None
        trading = dict(st.trading)
        trading[slot] = e
        return msgspec.structs.replace(st, trading=trading, known_at=_later(st.known_at, e.known_at))
    if isinstance(e, ImbalancePrice):
        published, line = parse_iso(e.published_at), e.source_line
        changes = {}
        if e.kind == "final":
            for name, value in (("short", e.unterdeckt_eur_mwh), ("long", e.ueberdeckt_eur_mwh)):
                if value is not None and _newer_price(getattr(st, name), published, line):
                    changes[name] = PriceCell(published, line, float(value))
        elif e.kind == "estimate":
            if e.price_eur_mwh is not None and _newer_price(st.est, published, line):
                changes["est"] = PriceCell(published, line, float(e.price_eur_mwh))
        else:
            raise ValueError(f"unknown price kind {e.kind!r}")
        if not changes:
            return None
        return msgspec.structs.replace(st, known_at=_later(st.known_at, event_time_s(e)), **changes)
    raise TypeError(f"not a QH event: {type(e).__name__}")


def imbalance_price(st: QhState, imbalance_mwh: float | None) -> tuple[float | None, str]:
    """Final reBAP (unterdeckt when short, ueberdeckt when long or flat), else the estimate."""
    final = st.short if (imbalance_mwh is not None and imbalance_mwh < 0) else st.long
    if final is not None:
        return final.price, "final"
    if st.est is not None:
        return st.est.price, "estimate"
    return None, "missing"


def _mwh(kw: float | None) -> float | None:
    return None if kw is None else kw_to_mwh(kw)


def _sum_present(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) if present else None


def asset_imbalance(qh_s: int, asset_id: str, s: AssetSlot, st: QhState) -> dict:
    """asset_imbalance_qh row: position = tradeable forecast, actual = best-of-infeed; a
    redispatched QH carries no imbalance (domain.md 4)."""
    position, actual = _mwh(s.tradeable_kw), _mwh(s.best_kw)
    if s.redispatched:
        imbalance: float | None = 0.0
    elif position is None or actual is None:
        imbalance = None
    else:
        imbalance = actual - position
    price, source = imbalance_price(st, imbalance)
    cost = 0.0 if s.redispatched else (None if imbalance is None or price is None else -imbalance * price)
    return {"asset_id": asset_id, "qh": qh_s, "position_mwh": position, "actual_mwh": actual,
            "imbalance_mwh": imbalance, "price_eur_mwh": price, "price_source": source, "cost_eur": cost}


def trading_rows(qh_s: int, st: QhState) -> dict[str, dict]:
    by_book: dict[str, list[TradingPartial]] = {"private": [], "public": []}
    for p in st.trading.values():
        by_book[p.book].append(p)
    return {book: trading_row(book, qh_s, ps) for book, ps in by_book.items()}


def portfolio_row(qh_s: int, st: QhState, members: frozenset[str] | None, net_sold_mwh: float) -> dict:
    """portfolio_qh row over the portfolio's assets (None = every asset).

    domain.md 4: ``imbalance = best_of_infeed + balanced - net_sold``; ``balanced`` is the sum of
    the positions (tradeable forecast) of the assets redispatched in the QH: the grid operator
    balances curtailed energy into our group, so such an asset counts as delivering its position.
    """
    assets = [s for aid, s in st.assets.items() if s.exists and (members is None or aid in members)]
    best = _sum_present(s.best_kw for s in assets)
    balanced_kw = _sum_present(s.tradeable_kw for s in assets if s.redispatched)
    balanced = 0.0 if balanced_kw is None else kw_to_mwh(balanced_kw)
    imbalance = None if best is None else kw_to_mwh(best) + balanced - net_sold_mwh
    price, source = imbalance_price(st, imbalance)
    return {"qh": qh_s, "best_of_infeed_kw": best,
            "latest_forecast_kw": _sum_present(s.latest_kw for s in assets),
            "tradeable_forecast_kw": _sum_present(s.tradeable_kw for s in assets),
            "net_sold_mwh": net_sold_mwh, "balanced_mwh": balanced, "imbalance_mwh": imbalance,
            "imbalance_price_eur_mwh": price,
            "imbalance_price_source": source,
            "imbalance_cost_eur": None if imbalance is None or price is None else -imbalance * price,
            "in_scope": bool(assets) or any(p.trades for p in st.trading.values())}


def qh_results(qh_s: int, st: QhState, members: frozenset[str] | None) -> tuple[dict, list[dict], dict]:
    """(portfolio row, asset imbalance rows, trading rows by book) of a QH."""
    trading = trading_rows(qh_s, st)
    port = portfolio_row(qh_s, st, members, trading["private"]["net_mwh"])
    rows = [asset_imbalance(qh_s, aid, s, st) for aid, s in sorted(st.assets.items()) if s.exists]
    return port, rows, trading


# ---------------------------------------------------------------------------------------------
# Portfolio membership: the assets of the newest CRM file (by its file time).


class Membership(msgspec.Struct, array_like=True, frozen=True):
    file_time: str = ""
    members: frozenset[str] = frozenset()


def step_membership(m: Membership | None, file_time: str, assets: Iterable[str]) -> Membership | None:
    """Newest file wins; the same file's assets accumulate (its records arrive one by one)."""
    m = m or Membership()
    if file_time < m.file_time:
        return None
    members = frozenset(assets) | (m.members if file_time == m.file_time else frozenset())
    if file_time == m.file_time and members == m.members:
        return None
    return Membership(file_time, members)
