"""The processors' functional core: typed events, typed state, pure steps. No Kafka, no Faust.

Correct by construction, whatever the delivery order, batching or timing:

- Every agent's state is a *set of facts* folded by rules that are commutative and idempotent
  (newest version wins, newest file wins, first trade occurrence wins, union of samples), so a
  redelivered, duplicated or reordered record leaves the state as it was or moves it to the same
  result. ``step(state, event) -> (state, changed keys)`` never mutates its input: a step that
  raises leaves the state untouched (the shell sends that one record to the DLQ alone).
- Results are *absolute* per key, recomputed from the state (trade sums with ``math.fsum`` over
  the trades the state holds, never ``+=``), so sending one twice is harmless.
- Where several producers feed one key downstream (asset snapshots and trading partials into a
  quarter-hour), each snapshot carries ``rev``: the number of distinct facts behind it. The facts
  behind a key only grow, so the final snapshot has the largest ``rev`` and a stale one delivered
  late can never replace it.

Time is UTC epoch seconds inside (``_s``), ISO 8601 text on the wire; units are in names.
Sections cited are those of ``domain.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from intraday.contract.events import occurrence_order
from intraday.core.qh import HOUR_S, QH_S, gate_closure, iso, parse_iso, qh_slices
from intraday.core.units import kw_to_mwh, mw_to_mwh

# ---------------------------------------------------------------------------------------------
# Events on the wire (schema_version 1, or 2 for a batch of version-1 events: contract.md)


class Event(msgspec.Struct, tag_field="type", kw_only=True):
    schema_version: int
    event_time: str | None = None
    source_file: str = ""
    source_line: int = 0


class Forecast(Event, tag="forecast", kw_only=True):
    asset_id: str
    version: str
    delivery_start: list[str]
    power_kw: list[float]


class LiveSample(Event, tag="live_sample", kw_only=True):
    asset_id: str
    timestamp: str
    value_kw: float
    source_row: int = 0


class FinalProduction(Event, tag="final_production", kw_only=True):
    asset_id: str
    delivery_start: str
    value_kw: float
    published_at: str


class RedispatchFlag(Event, tag="redispatch_flag", kw_only=True):
    asset_id: str
    delivery_start: str
    delivery_end: str
    is_redispatched: bool
    published_at: str


class Trade(Event, tag="trade", kw_only=True):
    book: str
    trade_id: str
    side: str | None = None
    delivery_start: str
    delivery_end: str
    execution_time: str
    price_eur_mwh: float
    volume_mw: float


class ImbalancePrice(Event, tag="imbalance_price", kw_only=True):
    kind: str
    delivery_start: str
    published_at: str
    price_eur_mwh: float | None = None
    unterdeckt_eur_mwh: float | None = None
    ueberdeckt_eur_mwh: float | None = None


class Contract(Event, tag="contract", kw_only=True):
    file_time: str
    asset_id: str


class Clock(Event, tag="clock", kw_only=True):
    now: str
    done: bool = False
    replay_id: str | None = None


class EndOfInput(Event, tag="end_of_input", kw_only=True):
    """The barrier of a replay: everything before it on its partition belongs to ``replay_id``.
    ``origin`` says who put it there (``source`` = the replay, else ``agent:topic:partition``
    or ``agent:partition``)."""
    replay_id: str
    origin: str = "source"


class AssetSnap(msgspec.Struct, kw_only=True):
    asset_id: str
    qh: int
    latest_version: float | None
    latest_kw: float | None
    tradeable_version: float | None
    tradeable_kw: float | None
    best_kw: float | None
    best_source: str | None
    live_kw: float | None
    live_samples: int
    final_kw: float | None
    redispatched: bool
    exists: bool
    rev: int = 0


class AssetQhBundle(Event, tag="asset_qh", kw_only=True):
    qh: int
    known_at: float | None = None
    src_ms: int | None = None
    assets: list[AssetSnap]


class TradingPartial(Event, tag="trading_partial", kw_only=True):
    """One trade partition's share of a (book, QH): sums over the trades it owns."""
    book: str
    qh: int
    part: int
    rev: int
    trades: int
    sold_mw: float
    bought_mw: float
    revenue_eur: float
    pv: float        # sum(price x MW)
    v: float         # sum(MW)
    idx: list[float]  # [full pv, full v, 3h pv, 3h v, 1h pv, 1h v] (public book)
    known_at: float | None = None
    src_ms: int | None = None


class Portfolio(Event, tag="portfolio", kw_only=True):
    file_time: str
    members: list[str]


V1 = (Forecast | LiveSample | FinalProduction | RedispatchFlag | Trade | ImbalancePrice | Contract | Clock
      | EndOfInput | AssetQhBundle | TradingPartial | Portfolio)


class Batch(msgspec.Struct, tag="batch", tag_field="type"):
    schema_version: int
    events: list[V1]


class _Versioned(msgspec.Struct):
    schema_version: object = None


_decoder = msgspec.json.Decoder(V1 | Batch)
_versions = msgspec.json.Decoder(_Versioned)  # only to name the version of a record that failed


class PoisonMessage(ValueError):
    """A record that is not a valid event of our schema (the reason says why)."""


def decode(raw: bytes | None) -> list[V1]:
    """The events of a topic value: one (schema_version 1) or a batch (2); raises PoisonMessage."""
    if raw is None:
        raise PoisonMessage("empty value")
    try:
        value = _decoder.decode(raw)
    except msgspec.ValidationError as exc:  # (a subclass of DecodeError: first)
        try:
            version = _versions.decode(raw).schema_version
        except msgspec.ValidationError:  # not even an object: the first error says it
            version = 1
        if version not in (1, 2):
            raise PoisonMessage(f"unsupported schema_version {version!r}") from None
        raise PoisonMessage(f"invalid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PoisonMessage(f"invalid JSON: {exc}") from None
    if isinstance(value, Batch):
        if value.schema_version != 2:
            raise PoisonMessage(f"unsupported schema_version {value.schema_version!r} for a batch")
        events = value.events
    else:
        events = [value]
    for e in events:
        if e.schema_version != 1:
            raise PoisonMessage(f"unsupported schema_version {e.schema_version!r}")
    return events


def event_time_s(e: V1) -> float | None:
    """When the data became available (event time); drives the watermark. Clock ticks and
    barriers carry none: a replay clock runs ahead of the data and must not move retention."""
    if isinstance(e, Clock | EndOfInput):
        return None
    if isinstance(e, AssetQhBundle | TradingPartial):
        return e.known_at
    if isinstance(e, Portfolio):
        return parse_iso(e.file_time)
    return parse_iso(e.event_time) if e.event_time else None


def oldest_qh(e: V1) -> float | None:
    """The earliest QH a data event is about (what retention compares with its cutoff)."""
    if isinstance(e, Forecast):
        return min(parse_iso(x) for x in e.delivery_start) if e.delivery_start else None
    if isinstance(e, LiveSample):
        return parse_iso(e.timestamp)
    if isinstance(e, FinalProduction | RedispatchFlag | Trade | ImbalancePrice):
        return parse_iso(e.delivery_start)
    if isinstance(e, AssetQhBundle | TradingPartial):
        return float(e.qh)
    return None


# ---------------------------------------------------------------------------------------------
# Section 1: forecasts. A version is one fact (asset, version); per (asset, QH) the derived
# latest / tradeable entry is a max over the versions that cover the QH.


class ForecastVersion(msgspec.Struct, array_like=True, frozen=True):
    version_s: float
    starts: list[int]
    powers: list[float]


class QhForecast(msgspec.Struct, array_like=True, frozen=True):
    """latest = newest version <= t, tradeable = newest <= t - 15 min; n = versions seen."""
    lv: float | None = None
    lk: float | None = None
    tv: float | None = None
    tk: float | None = None
    n: int = 0


def forecast_version(e: Forecast) -> ForecastVersion:
    starts = [int(parse_iso(x)) for x in e.delivery_start]
    if len(starts) != len(e.power_kw):
        raise ValueError("delivery_start and power_kw differ in length")
    if any(s % QH_S for s in starts):
        raise ValueError("a forecast start is not aligned to quarter-hours")
    return ForecastVersion(parse_iso(e.version), starts, [float(p) for p in e.power_kw])


def fold_forecast(entry: QhForecast | None, version_s: float, qh_s: int, kw: float) -> QhForecast:
    """One version's row for QH ``qh_s`` folded in (domain.md 1). A late or older version never
    replaces a newer one; the same version again keeps its value (files are re-sent unchanged).

    >>> e = fold_forecast(None, 43200, 43200, 5.0); e = fold_forecast(e, 42300, 43200, 4.0)
    >>> (e.lv, e.lk, e.tv, e.tk, e.n)
    (43200, 5.0, 42300, 4.0, 2)
    """
    e = entry or QhForecast()
    lv, lk, tv, tk = e.lv, e.lk, e.tv, e.tk
    if version_s <= qh_s and (lv is None or version_s > lv):
        lv, lk = version_s, kw
    if version_s <= gate_closure(qh_s) and (tv is None or version_s > tv):
        tv, tk = version_s, kw
    return QhForecast(lv, lk, tv, tk, e.n + 1)


# ---------------------------------------------------------------------------------------------
# Section 2: observations per (asset, QH): live samples, DSO final, redispatch flag.


class AssetObs(msgspec.Struct, array_like=True, frozen=True):
    """Facts of an (asset, QH). ``live``: timestamp -> [kW, rank] where rank orders re-sent samples
    (the later file and row wins); ``final`` / ``flag``: [published_s, line, value] of the newest
    file; ``flagged``: ever flagged (the QH is reported); ``n``: distinct facts seen."""
    live: dict[float, tuple[float, str]] = {}
    final: tuple[float, int, float] | None = None
    flag: tuple[float, int, bool] | None = None
    flagged: bool = False
    n: int = 0


def _rank(source_file: str, line: int) -> str:
    return occurrence_order(source_file, line)


def apply_live(obs: AssetObs | None, ts: float, kw: float, rank: str) -> AssetObs | None:
    """A live sample; None when it changes nothing (a redelivery, or an older copy)."""
    o = obs or AssetObs()
    old = o.live.get(ts)
    if old is not None and old[1] >= rank:
        return None
    live = dict(o.live)
    live[ts] = (kw, rank)
    return msgspec.structs.replace(o, live=live, n=o.n + 1)


def apply_final(obs: AssetObs | None, published_s: float, line: int, kw: float) -> AssetObs | None:
    o = obs or AssetObs()
    if o.final is not None and (published_s, line) <= o.final[:2]:
        return None
    return msgspec.structs.replace(o, final=(published_s, line, kw), n=o.n + 1)


def apply_flag(obs: AssetObs | None, published_s: float, line: int, flag: bool) -> AssetObs | None:
    o = obs or AssetObs()
    if o.flag is not None and (published_s, line) <= o.flag[:2]:
        return None
    return msgspec.structs.replace(o, flag=(published_s, line, flag), flagged=o.flagged or flag, n=o.n + 1)


def live_mean(obs: AssetObs | None) -> float | None:
    if obs is None or not obs.live:
        return None
    return math.fsum(v[0] for v in obs.live.values()) / len(obs.live)  # exactly rounded: order-free


def asset_snap(asset_id: str, qh_s: int, fc: QhForecast | None, obs: AssetObs | None) -> AssetSnap:
    """The published result of an (asset, QH): forecast columns and best-of-infeed (domain.md 2:
    final > live mean > redispatch 0 > latest forecast), with its source."""
    fc = fc or QhForecast()
    mean = live_mean(obs)
    final = obs.final if obs else None
    redispatched = bool(obs and obs.flag and obs.flag[2])
    if final is not None:
        best, source = final[2], "final"
    elif mean is not None:
        best, source = mean, "live"
    elif redispatched:
        best, source = 0.0, "redispatch"
    elif fc.lk is not None:
        best, source = fc.lk, "forecast"
    else:
        best, source = None, None
    exists = bool(fc.n or (obs and (obs.live or obs.final or obs.flagged)))
    return AssetSnap(asset_id=asset_id, qh=qh_s, latest_version=fc.lv, latest_kw=fc.lk,
                     tradeable_version=fc.tv, tradeable_kw=fc.tk, best_kw=best, best_source=source,
                     live_kw=mean, live_samples=len(obs.live) if obs else 0,
                     final_kw=final[2] if final else None, redispatched=redispatched, exists=exists,
                     rev=fc.n + (obs.n if obs else 0))


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
    return TradeOcc(_rank(e.source_file, e.source_line), start, len(qhs), side, float(e.volume_mw),
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
