"""Independent batch reference of domain.md, in pandas: the oracle for the exported result files.

``compute_reference(day_dir)`` reads a delivery-day directory (data-formats.md) from scratch and
returns the five result tables of contract.md (``forecast_qh.csv``, ``infeed_qh.csv``,
``trading_qh.csv``, ``asset_imbalance_qh.csv``, ``portfolio_qh.csv``), with exactly the contract's
columns in the contract's order.

It deliberately imports nothing of the project (``intraday``, ``producers``, ...): it is a second,
independent reading of domain.md, with the choices of docs/interpretations.md.

Conventions inside this module: every instant is an ``int64`` of epoch **milliseconds** (UTC); a
quarter-hour (QH) is keyed by its start. On output, instants become ISO 8601 UTC text
(``2025-06-08T10:15:00Z``), numbers floats (NaN = empty cell), ``redispatched`` a bool.

Files or rows that do not parse are skipped (the system quarantines them); a bad row never stops
the rest of its file, a bad file never stops the other files. A file whose name does not follow its
documented pattern is skipped as well: without the time in its name it cannot be replayed.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

QH_MS = 15 * 60 * 1000
HOUR_MS = 60 * 60 * 1000
GATE_CLOSURE_MS = QH_MS  # domain.md 1: tradeable = version <= t - 15 min
SECONDS_BELOW = 1e11  # data-formats.md: a JSON epoch value below 1e11 is seconds, else ms
KW_TO_MWH_PER_QH = 0.25 / 1000.0  # kW averaged over 15 min -> MWh

# contract.md: key columns, then value columns, in order
CONTRACT: dict[str, list[str]] = {
    "forecast_qh.csv": [
        "asset_id", "delivery_start",
        "latest_version", "latest_kw", "tradeable_version", "tradeable_kw",
    ],
    "infeed_qh.csv": [
        "asset_id", "delivery_start",
        "best_kw", "best_source", "live_kw", "final_kw", "redispatched",
    ],
    "trading_qh.csv": [
        "delivery_start", "book",
        "trades", "sold_mwh", "bought_mwh", "net_mwh", "revenue_eur", "vwap_eur_mwh",
        "idx_full_eur_mwh", "idx_3h_eur_mwh", "idx_1h_eur_mwh",
    ],
    "asset_imbalance_qh.csv": [
        "asset_id", "delivery_start",
        "position_mwh", "actual_mwh", "imbalance_mwh", "price_eur_mwh", "price_source", "cost_eur",
    ],
    "portfolio_qh.csv": [
        "delivery_start",
        "best_of_infeed_kw", "latest_forecast_kw", "tradeable_forecast_kw", "net_sold_mwh",
        "imbalance_mwh", "imbalance_price_eur_mwh", "imbalance_price_source", "imbalance_cost_eur",
    ],
}
KEYS: dict[str, list[str]] = {
    "forecast_qh.csv": ["asset_id", "delivery_start"],
    "infeed_qh.csv": ["asset_id", "delivery_start"],
    "trading_qh.csv": ["delivery_start", "book"],
    "asset_imbalance_qh.csv": ["asset_id", "delivery_start"],
    "portfolio_qh.csv": ["delivery_start"],
}

# file-name patterns of data-formats.md; the named group "ts" is the file's time, made sortable
FORECAST_RE = re.compile(r"^forecast_(?P<asset>.+)_(?P<ts>\d{4}-\d{2}-\d{2}T\d{6}Z)\.json$")
LIVE_RE = re.compile(r"^(?P<short>.+)_(?P<ts>\d{8})\.json$")
CRM_RE = re.compile(r"^asset_contracts_(?P<ts>\d{8}_\d{6})\.csv$")
PRIVATE_RE = re.compile(r"^Private_Trades-\d{8}-(?P<ts>\d{8}T\d{9}Z)\.csv$")
PUBLIC_RE = re.compile(r"^Public_Trades-\d{8}-(?P<ts>\d{8}T\d{9}Z)\.csv$")
ESTIMATE_RE = re.compile(r"^imbalance_price_estimation_(?P<ts>\d{4}-\d{2}-\d{2}T\d{6}Z)\.csv$")
FINAL_PRICE_RE = re.compile(r"^imbalance_price_final_(?P<ts>\d{8}_\d{6})\.csv$")
FINAL_PROD_RE = re.compile(r"^final_production_(?P<mp>.+)_(?P<ts>\d{8})\.csv$")
FLAG_RE = re.compile(r"^redispatch_flag_(?P<mp>.+)_(?P<ts>\d{8}_\d{4})\.csv$")

_TS_FORMATS = {
    FORECAST_RE: "%Y-%m-%dT%H%M%SZ",
    LIVE_RE: "%Y%m%d",
    CRM_RE: "%Y%m%d_%H%M%S",
    PRIVATE_RE: "%Y%m%dT%H%M%S%fZ",
    PUBLIC_RE: "%Y%m%dT%H%M%S%fZ",
    ESTIMATE_RE: "%Y-%m-%dT%H%M%SZ",
    FINAL_PRICE_RE: "%Y%m%d_%H%M%S",
    FINAL_PROD_RE: "%Y%m%d",
    FLAG_RE: "%Y%m%d_%H%M",
}


# --------------------------------------------------------------------------------------------
# small helpers


def _files(folder: Path, pattern: re.Pattern[str]) -> list[tuple[Path, re.Match[str]]]:
    """The files of ``folder`` whose name matches ``pattern``, oldest first by file-name time.

    Ties (same time) are broken by file name, so "the newest file" is always well defined.
    """
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match is None or not path.is_file():
            continue
        try:
            when = datetime.strptime(match.group("ts"), _TS_FORMATS[pattern])
        except ValueError:
            continue
        found.append((when, path.name, path, match))
    found.sort(key=lambda item: (item[0], item[1]))
    return [(path, match) for _, _, path, match in found]


def _iso(ms: pd.Series) -> pd.Series:
    """Epoch ms (float with NaN, or int) -> ISO 8601 UTC text; NaN stays NaN."""
    out = pd.Series(np.nan, index=ms.index, dtype=object)
    ok = ms.notna()
    if ok.any():
        stamps = pd.to_datetime(ms[ok].astype("int64"), unit="ms", utc=True)
        whole = stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        frac = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(r"(\.\d{3})\d{3}Z$", r"\1Z", regex=True)
        has_frac = (ms[ok].astype("int64") % 1000) != 0
        out[ok] = np.where(has_frac, frac, whole)
    return out


def _json_numbers(column: list) -> np.ndarray:
    """A JSON column as floats; anything that is not a finite JSON number (null, text, bool) -> NaN."""
    if all(type(v) is float or type(v) is int for v in column):
        arr = np.asarray(column, dtype=float)
    else:
        arr = np.array(
            [float(v) if (type(v) is float or type(v) is int) else np.nan for v in column], dtype=float
        )
    arr[~np.isfinite(arr)] = np.nan
    return arr


def _epoch_ms(values: np.ndarray) -> np.ndarray:
    """JSON epoch values (seconds or ms, decided per value by magnitude) -> float ms, NaN kept."""
    return np.where(values < SECONDS_BELOW, np.round(values * 1000.0), np.round(values))


def _utc_ms(text: pd.Series) -> pd.Series:
    """Timestamp text (ISO 8601 with or without offset; naive = UTC) -> float epoch ms, NaN if bad."""
    stamps = pd.to_datetime(text.str.strip(), format="ISO8601", utc=True, errors="coerce")
    # pandas 3 may pick a non-ns unit: normalise to ns before taking the integer
    stamps = stamps.dt.as_unit("ns")
    ns = stamps.astype("int64").astype(float)
    ns[stamps.isna()] = np.nan
    return np.round(ns / 1e6)


def _number(text: pd.Series) -> pd.Series:
    """Plain decimal text (dot) -> float, NaN if empty, non-numeric or not finite."""
    out = pd.to_numeric(text.str.strip(), errors="coerce").astype(float)
    out[~np.isfinite(out)] = np.nan
    return out


def _german_number(text: pd.Series) -> pd.Series:
    """Decimal-comma text (``-14,35``, ``1.234,56``) -> float. A text without comma is read as is."""
    t = text.str.strip()
    has_comma = t.str.contains(",", regex=False)
    t = t.where(~has_comma, t.str.replace(".", "", regex=False).str.replace(",", ".", regex=False))
    return _number(t)


def _read_csv_text(path: Path, sep: str, skip_comment_line: bool = False, quoting: bool = False
                   ) -> pd.DataFrame | None:
    """A CSV file as all-text columns (stripped header names), empty cells as ''. None if unreadable.

    Lines with too many fields are skipped (they do not stop the file); lines with too few get ''.
    Without ``quoting`` a quote character is plain text, so a stray quote in one row cannot swallow
    the rows after it; bytes that are not UTF-8 become U+FFFD and spoil only their own field.
    """
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace") as fh:
            first = fh.readline()
        skip = 1 if (skip_comment_line and first.lstrip().startswith("#")) else 0
        df = pd.read_csv(
            path, sep=sep, skiprows=skip, dtype=str, keep_default_na=False, na_filter=False,
            on_bad_lines="skip", encoding="utf-8-sig", encoding_errors="replace",
            quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE,
        )
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    df.columns = [str(c).strip() for c in df.columns]
    return df.fillna("")


def _aligned(ms: pd.Series | np.ndarray) -> np.ndarray:
    """True where an epoch-ms value is a finite QH start."""
    arr = np.asarray(ms, dtype=float)
    ok = np.isfinite(arr)
    out = np.zeros(arr.shape, dtype=bool)
    out[ok] = (arr[ok].astype(np.int64) % QH_MS) == 0
    return out


# --------------------------------------------------------------------------------------------
# readers: each returns a DataFrame of valid rows only, in delivery order (file order, row order)


def read_crm(day_dir: Path) -> tuple[set[str], dict[str, str]] | None:
    """The newest CRM file that parses: (portfolio asset ids, metering point -> asset id).

    None when there is no CRM file at all (interpretations.md: then every asset seen is in scope).
    A file parses when it has the columns ``asset_id`` and ``metering_point_id``; rows with an empty
    ``asset_id`` are skipped. Inconsistent contracts (e.g. fixed price without price) still count.
    """
    for path, _ in reversed(_files(day_dir / "crm", CRM_RE)):
        df = _read_csv_text(path, sep=",", quoting=True)  # CRM text fields may be quoted
        if df is None or "asset_id" not in df.columns or "metering_point_id" not in df.columns:
            continue
        assets = df["asset_id"].str.strip()
        meters = df["metering_point_id"].str.strip()
        keep = assets != ""
        mapping = {m: a for m, a in zip(meters[keep], assets[keep], strict=True) if m}
        return set(assets[keep]), mapping
    return None


def _json_key_asset(doc: dict) -> str | None:
    key = doc.get("key")
    if not isinstance(key, dict):
        return None
    for name in ("asset_id", "entity_id"):
        value = key.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _json_columns(doc: dict, names: list[str]) -> list[list] | None:
    """The named columns of a column-oriented JSON document, or None if it does not have them."""
    ids, values = doc.get("column_ids"), doc.get("values")
    if not isinstance(ids, list) or not isinstance(values, list) or len(ids) != len(values):
        return None
    out = []
    for name in names:
        if name not in ids or not isinstance(values[ids.index(name)], list):
            return None
        out.append(values[ids.index(name)])
    n = min(len(c) for c in out)  # ragged columns: rows beyond the shortest one are incomplete
    return [c[:n] for c in out]


def _load_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_forecasts(day_dir: Path) -> pd.DataFrame:
    """Valid forecast rows: asset_id, qh, version (ms), power_kw; in delivery order.

    The asset is ``key.asset_id`` (or ``key.entity_id``); a row needs a QH-aligned ``start``, a
    ``version`` and a ``power``, all finite JSON numbers. ``end`` is not used.
    """
    assets, qhs, versions, powers = [], [], [], []
    for path, _ in _files(day_dir / "vpp" / "forecasts", FORECAST_RE):
        doc = _load_json(path)
        if doc is None:
            continue
        asset = _json_key_asset(doc)
        cols = _json_columns(doc, ["start", "version", "power"])
        if asset is None or cols is None:
            continue
        start = _epoch_ms(_json_numbers(cols[0]))
        version = _epoch_ms(_json_numbers(cols[1]))
        power = _json_numbers(cols[2])
        ok = _aligned(start) & np.isfinite(version) & np.isfinite(power)
        n = int(ok.sum())
        if n == 0:
            continue
        assets.append(np.full(n, asset, dtype=object))
        qhs.append(start[ok].astype(np.int64))
        versions.append(version[ok].astype(np.int64))
        powers.append(power[ok])
    if not assets:
        return pd.DataFrame({"asset_id": pd.Series(dtype=object), "qh": pd.Series(dtype=np.int64),
                             "version": pd.Series(dtype=np.int64), "power_kw": pd.Series(dtype=float)})
    return pd.DataFrame({
        "asset_id": np.concatenate(assets), "qh": np.concatenate(qhs),
        "version": np.concatenate(versions), "power_kw": np.concatenate(powers),
    })


def read_live(day_dir: Path) -> pd.DataFrame:
    """Valid live samples: asset_id, ts (ms), value_kw; in delivery order.

    The asset is ``key.asset_id`` or ``key.entity_id`` (never the short code of the file name);
    ``quality`` is not used; negative values are kept.
    """
    assets, stamps, values = [], [], []
    for path, _ in _files(day_dir / "vpp" / "live_measured_infeed", LIVE_RE):
        doc = _load_json(path)
        if doc is None:
            continue
        asset = _json_key_asset(doc)
        cols = _json_columns(doc, ["timestamp", "value"])
        if asset is None or cols is None:
            continue
        ts = _epoch_ms(_json_numbers(cols[0]))
        value = _json_numbers(cols[1])
        ok = np.isfinite(ts) & np.isfinite(value)
        n = int(ok.sum())
        if n == 0:
            continue
        assets.append(np.full(n, asset, dtype=object))
        stamps.append(ts[ok].astype(np.int64))
        values.append(value[ok])
    if not assets:
        return pd.DataFrame({"asset_id": pd.Series(dtype=object), "ts": pd.Series(dtype=np.int64),
                             "value_kw": pd.Series(dtype=float)})
    return pd.DataFrame({"asset_id": np.concatenate(assets), "ts": np.concatenate(stamps),
                         "value_kw": np.concatenate(values)})


def read_final_production(day_dir: Path, meter_to_asset: dict[str, str]) -> pd.DataFrame:
    """DSO final values: asset_id, qh, final_kw; one per (asset, QH), the newest file winning.

    The metering point is the one in the file name, mapped to its asset by the newest CRM file;
    files of unknown metering points are ignored. Empty or non-numeric values are no value.
    """
    frames = []
    for path, match in _files(day_dir / "distribution_system_operator", FINAL_PROD_RE):
        asset = meter_to_asset.get(match.group("mp"))
        if asset is None:
            continue
        df = _read_csv_text(path, sep=",")
        if df is None or df.shape[1] < 2 or df.columns[0] != "delivery_start__utc_":
            continue
        when = df.iloc[:, 0].str.strip().str.replace(r"\s*UTC$", "", regex=True)
        qh = _utc_ms(when)
        kw = _number(df.iloc[:, 1])
        ok = _aligned(qh) & kw.notna().to_numpy()
        frames.append(pd.DataFrame({"asset_id": asset, "qh": qh[ok].astype(np.int64), "final_kw": kw[ok]}))
    if not frames:
        return pd.DataFrame({"asset_id": pd.Series(dtype=object), "qh": pd.Series(dtype=np.int64),
                             "final_kw": pd.Series(dtype=float)})
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(["asset_id", "qh"], keep="last").reset_index(drop=True)


def read_redispatch_flags(day_dir: Path, meter_to_asset: dict[str, str]) -> pd.DataFrame:
    """Redispatch flag rows expanded to QHs: asset_id, qh, flag (bool); in delivery order.

    A row ``[delivery_start, delivery_end)`` (QH-aligned, end after start) covers every QH inside;
    ``is_redispatched`` is ``1``/``0`` (``true``/``false`` accepted too).
    """
    frames = []
    for path, match in _files(day_dir / "distribution_system_operator", FLAG_RE):
        asset = meter_to_asset.get(match.group("mp"))
        if asset is None:
            continue
        df = _read_csv_text(path, sep=",")
        needed = {"delivery_start", "delivery_end", "is_redispatched"}
        if df is None or not needed <= set(df.columns):
            continue
        start = _utc_ms(df["delivery_start"])
        end = _utc_ms(df["delivery_end"])
        flag_text = df["is_redispatched"].str.strip().str.lower()
        flag = flag_text.map({"1": True, "0": False, "true": True, "false": False})
        ok = _aligned(start) & _aligned(end) & (end > start).to_numpy() & flag.notna().to_numpy()
        if not ok.any():
            continue
        s = start[ok].astype(np.int64).to_numpy()
        e = end[ok].astype(np.int64).to_numpy()
        f = flag[ok].astype(bool).to_numpy()
        counts = (e - s) // QH_MS
        row = np.repeat(np.arange(len(s)), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        frames.append(pd.DataFrame({"asset_id": asset, "qh": s[row] + offset * QH_MS, "flag": f[row]}))
    if not frames:
        return pd.DataFrame({"asset_id": pd.Series(dtype=object), "qh": pd.Series(dtype=np.int64),
                             "flag": pd.Series(dtype=bool)})
    return pd.concat(frames, ignore_index=True)


def read_trades(day_dir: Path, book: str) -> pd.DataFrame:
    """Valid trades of a book (``private`` / ``public``), first occurrence of each id, as QH slices.

    Returns trade_id, side (private only; '' for public), qh, execution (ms), price, mw.
    A valid row has a non-empty TradeId, QH-aligned DeliveryStart, a delivery of 15 or 60 minutes,
    a parseable ExecutionTime, a finite Price, a finite Volume > 0 and, for private, Side BUY/SELL.
    A trade id seen again is ignored whatever its content (interpretations.md); files are read in
    file-name time order.
    """
    pattern = PRIVATE_RE if book == "private" else PUBLIC_RE
    needed = ["TradeId", "DeliveryStart", "DeliveryEnd", "ExecutionTime", "Price", "Volume"]
    if book == "private":
        needed.append("Side")
    frames = []
    for path, _ in _files(day_dir / "exchange", pattern):
        df = _read_csv_text(path, sep=";", skip_comment_line=True)
        if df is None or not set(needed) <= set(df.columns):
            continue
        trade_id = df["TradeId"].str.strip()
        start = _utc_ms(df["DeliveryStart"])
        end = _utc_ms(df["DeliveryEnd"])
        execution = _utc_ms(df["ExecutionTime"])
        price = _number(df["Price"])
        mw = _number(df["Volume"])
        side = df["Side"].str.strip().str.upper() if book == "private" else pd.Series("", index=df.index)
        duration = end - start
        ok = (
            (trade_id != "")
            & pd.Series(_aligned(start), index=df.index)
            & duration.isin([QH_MS, HOUR_MS])
            & execution.notna()
            & price.notna()
            & (mw > 0)
        )
        if book == "private":
            ok &= side.isin(["BUY", "SELL"])
        frames.append(pd.DataFrame({
            "trade_id": trade_id[ok], "side": side[ok], "start": start[ok].astype(np.int64),
            "slices": (duration[ok] // QH_MS).astype(np.int64), "execution": execution[ok].astype(np.int64),
            "price": price[ok], "mw": mw[ok],
        }))
    cols = {"trade_id": object, "side": object, "qh": np.int64, "execution": np.int64,
            "price": float, "mw": float}
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    trades = pd.concat(frames, ignore_index=True).drop_duplicates("trade_id", keep="first")
    trades = trades.loc[trades.index.repeat(trades["slices"])]
    trades["qh"] = trades["start"] + trades.groupby(level=0).cumcount().to_numpy() * QH_MS
    return trades[list(cols)].reset_index(drop=True)


_ZONE_OFFSETS_MS = {"UTC": 0, "GMT": 0, "Z": 0, "CET": HOUR_MS, "MEZ": HOUR_MS,
                    "CEST": 2 * HOUR_MS, "MESZ": 2 * HOUR_MS}
_BERLIN_NAMES = {"EUROPE/BERLIN", "MEZ/MESZ", "CET/CEST"}


def _normalise_header(name: str) -> str:
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue"})
    return name.strip().translate(table).lower()


def _imbalance_qh(df: pd.DataFrame) -> pd.Series:
    """The UTC QH start (float ms, NaN if bad) of each imbalance row from Datum, von and Zeitzone.

    Berlin civil time: an ambiguous wall time (the repeated 02:xx of the autumn change) is read as
    summer time at its first occurrence in the file and winter time at the next; a wall time that
    does not exist (spring change) makes the row invalid.
    """
    zone = df["zeitzone"].str.strip().str.upper()
    wall = pd.to_datetime(df["datum"].str.strip() + " " + df["von"].str.strip(),
                          format="%d.%m.%Y %H:%M", errors="coerce")
    bis_ok = pd.to_datetime(df["bis"].str.strip(), format="%H:%M", errors="coerce").notna()
    wall_ns = wall.dt.as_unit("ns")
    wall_ms = pd.Series(np.round(wall_ns.astype("int64").astype(float) / 1e6), index=df.index)
    wall_ms[wall.isna()] = np.nan
    offset = zone.map(_ZONE_OFFSETS_MS).astype(float)
    out = wall_ms - offset  # fixed-offset zones; NaN for Berlin / unknown zones
    berlin = zone.isin(_BERLIN_NAMES) & wall.notna()
    if berlin.any():
        local = wall_ns[berlin]
        first_seen = local.groupby(local).cumcount() == 0
        aware = local.dt.tz_localize("Europe/Berlin", ambiguous=first_seen.to_numpy(), nonexistent="NaT")
        utc = aware.dt.tz_convert("UTC").dt.as_unit("ns")
        ms = np.round(utc.astype("int64").astype(float) / 1e6)
        ms[utc.isna()] = np.nan
        out[berlin] = ms
    out[~bis_ok] = np.nan
    out[~pd.Series(_aligned(out), index=df.index)] = np.nan
    return out


def read_imbalance_prices(day_dir: Path) -> dict[str, pd.Series]:
    """Imbalance prices per QH (index qh ms): ``estimate``, ``short`` (reBAP unterdeckt), ``long``.

    Per QH: the row of the newest file (file-name time) that has a value for it, the last such
    row within the file; a row whose column is empty does not count for that column. A row with a
    non-empty but unparseable price, or a bad date/time/zone, is skipped as a whole.
    """
    def collect(pattern: re.Pattern[str], columns: dict[str, str]) -> dict[str, pd.Series]:
        parts: dict[str, list[pd.DataFrame]] = {name: [] for name in columns.values()}
        for path, _ in _files(day_dir / "imbalance", pattern):
            df = _read_csv_text(path, sep=";")
            if df is None:
                continue
            df.columns = [_normalise_header(c) for c in df.columns]
            if not {"datum", "zeitzone", "von", "bis", *columns} <= set(df.columns):
                continue
            qh = _imbalance_qh(df)
            row_ok = qh.notna()
            values = {}
            for header in columns:
                text = df[header].str.strip()
                number = _german_number(text)
                row_ok &= (text == "") | number.notna()
                values[header] = number
            for header, name in columns.items():
                ok = row_ok & values[header].notna()
                parts[name].append(pd.DataFrame({"qh": qh[ok].astype(np.int64), "price": values[header][ok]}))
        out = {}
        for name, frames in parts.items():
            if frames:
                df = pd.concat(frames, ignore_index=True).drop_duplicates("qh", keep="last")
                out[name] = df.set_index("qh")["price"]
            else:
                out[name] = pd.Series(dtype=float, index=pd.Index([], dtype=np.int64))
        return out

    prices = collect(ESTIMATE_RE, {"aep-schaetzer": "estimate"})
    prices.update(collect(FINAL_PRICE_RE, {"rebap unterdeckt": "short", "rebap ueberdeckt": "long"}))
    return prices


# --------------------------------------------------------------------------------------------
# the rules


def _latest_before(forecasts: pd.DataFrame, lag_ms: int) -> pd.DataFrame:
    """Per (asset, qh): the value of the greatest version with ``version <= qh - lag_ms``.

    ``forecasts`` already holds one row per (asset, qh, version) (the later delivery).
    """
    eligible = forecasts[forecasts["version"] <= forecasts["qh"] - lag_ms]
    eligible = eligible.sort_values(["asset_id", "qh", "version"], kind="stable")
    best = eligible.drop_duplicates(["asset_id", "qh"], keep="last")
    return best[["asset_id", "qh", "version", "power_kw"]]


def _imbalance_price(qh: pd.Series, imbalance_mwh: pd.Series, prices: dict[str, pd.Series]):
    """domain.md 4: final reBAP (unterdeckt when short = imbalance < 0, else ueberdeckt), else the
    estimate, else missing. Returns (price, source) Series aligned with ``qh``."""
    short = (imbalance_mwh < 0).to_numpy()  # NaN imbalance: not short
    final_short = qh.map(prices["short"]).to_numpy(dtype=float)
    final_long = qh.map(prices["long"]).to_numpy(dtype=float)
    final = np.where(short, final_short, final_long)
    estimate = qh.map(prices["estimate"]).to_numpy(dtype=float)
    has_final, has_estimate = ~np.isnan(final), ~np.isnan(estimate)
    price = np.where(has_final, final, np.where(has_estimate, estimate, np.nan))
    source = np.where(has_final, "final", np.where(has_estimate, "estimate", "missing"))
    return pd.Series(price, index=qh.index, dtype=float), pd.Series(source, index=qh.index, dtype=object)


def _trading_book(slices: pd.DataFrame, qhs: pd.Index, public: bool) -> pd.DataFrame:
    """domain.md 3 per QH of ``qhs`` for one book; a QH without slices has 0 trades and no VWAP."""
    s = slices.assign(
        pv=slices["price"] * slices["mw"],
        sold=np.where(slices["side"] == "SELL", slices["mw"] * 0.25, 0.0),
        bought=np.where(slices["side"] == "BUY", slices["mw"] * 0.25, 0.0),
    )
    s["revenue"] = (s["sold"] - s["bought"]) * s["price"]
    g = s.groupby("qh")
    agg = pd.DataFrame({
        "trades": g["trade_id"].nunique(), "sold_mwh": g["sold"].sum(), "bought_mwh": g["bought"].sum(),
        "revenue_eur": g["revenue"].sum(), "pv": g["pv"].sum(), "mw": g["mw"].sum(),
    }).reindex(qhs)
    out = pd.DataFrame(index=qhs)
    out["trades"] = agg["trades"].fillna(0).astype(float)
    out["sold_mwh"] = agg["sold_mwh"].fillna(0.0)
    out["bought_mwh"] = agg["bought_mwh"].fillna(0.0)
    out["net_mwh"] = out["sold_mwh"] - out["bought_mwh"]
    out["revenue_eur"] = agg["revenue_eur"].fillna(0.0)
    mw = agg["mw"].fillna(0.0)
    out["vwap_eur_mwh"] = (agg["pv"] / mw).where(mw != 0)
    for col, hours in (("idx_full_eur_mwh", None), ("idx_3h_eur_mwh", 3), ("idx_1h_eur_mwh", 1)):
        if not public:
            out[col] = np.nan
            continue
        w = s if hours is None else s[(s["execution"] >= s["qh"] - hours * HOUR_MS) & (s["execution"] < s["qh"])]
        gw = w.groupby("qh")
        w_pv, w_mw = gw["pv"].sum().reindex(qhs), gw["mw"].sum().reindex(qhs).fillna(0.0)
        out[col] = (w_pv / w_mw).where(w_mw != 0)
    if public:
        out["sold_mwh"] = 0.0
        out["bought_mwh"] = 0.0
        out["net_mwh"] = 0.0
        out["revenue_eur"] = np.nan
    out["book"] = "public" if public else "private"
    return out


def compute_reference(day_dir: Path) -> dict[str, pd.DataFrame]:
    """The five result tables of contract.md for a delivery-day directory, by batch computation."""
    day_dir = Path(day_dir)
    crm = read_crm(day_dir)
    meter_to_asset = crm[1] if crm is not None else {}

    forecasts = read_forecasts(day_dir)
    live = read_live(day_dir)
    finals = read_final_production(day_dir, meter_to_asset)
    flags = read_redispatch_flags(day_dir, meter_to_asset)

    if crm is not None:
        portfolio = crm[0]
        forecasts = forecasts[forecasts["asset_id"].isin(portfolio)]
        live = live[live["asset_id"].isin(portfolio)]
        finals = finals[finals["asset_id"].isin(portfolio)]
        flags = flags[flags["asset_id"].isin(portfolio)]

    # --- forecasts (domain.md 1): one row per (asset, qh, version), the later delivery's value
    forecasts = forecasts.drop_duplicates(["asset_id", "qh", "version"], keep="last")
    latest = _latest_before(forecasts, 0).rename(columns={"version": "latest_version", "power_kw": "latest_kw"})
    tradeable = _latest_before(forecasts, GATE_CLOSURE_MS).rename(
        columns={"version": "tradeable_version", "power_kw": "tradeable_kw"})

    # --- live mean over [t, t + 15 min); a re-sent sample (same asset and timestamp) replaces
    live = live.drop_duplicates(["asset_id", "ts"], keep="last")
    live = live.assign(qh=(live["ts"] // QH_MS) * QH_MS)
    live_mean = live.groupby(["asset_id", "qh"], as_index=False)["value_kw"].mean().rename(
        columns={"value_kw": "live_kw"})

    # --- redispatch: per (asset, qh) the row of the newest flag file (the last row read) decides
    deciding = flags.drop_duplicates(["asset_id", "qh"], keep="last").rename(columns={"flag": "redispatched"})

    # --- the (asset, QH) keys (interpretations.md: forecast row, live sample, final value, flag = 1)
    keys = pd.concat([
        forecasts[["asset_id", "qh"]], live[["asset_id", "qh"]], finals[["asset_id", "qh"]],
        flags.loc[flags["flag"], ["asset_id", "qh"]],
    ], ignore_index=True).drop_duplicates().sort_values(["asset_id", "qh"]).reset_index(drop=True)

    a = keys.merge(latest, on=["asset_id", "qh"], how="left")
    a = a.merge(tradeable, on=["asset_id", "qh"], how="left")
    a = a.merge(live_mean, on=["asset_id", "qh"], how="left")
    a = a.merge(finals, on=["asset_id", "qh"], how="left")
    a = a.merge(deciding, on=["asset_id", "qh"], how="left")
    a["redispatched"] = a["redispatched"].astype("boolean").fillna(False).astype(bool)

    # --- best-of-infeed (domain.md 2): final > live > redispatch (0) > latest forecast
    has_final, has_live = a["final_kw"].notna(), a["live_kw"].notna()
    has_forecast = a["latest_kw"].notna()
    a["best_kw"] = np.select(
        [has_final, has_live, a["redispatched"], has_forecast],
        [a["final_kw"], a["live_kw"], 0.0, a["latest_kw"]], default=np.nan)
    a["best_source"] = pd.Series(np.select(
        [has_final, has_live, a["redispatched"], has_forecast],
        ["final", "live", "redispatch", "forecast"], default=""), index=a.index, dtype=object).replace("", np.nan)

    # --- asset imbalance (domain.md 4)
    prices = read_imbalance_prices(day_dir)
    a["position_mwh"] = a["tradeable_kw"] * KW_TO_MWH_PER_QH
    a["actual_mwh"] = a["best_kw"] * KW_TO_MWH_PER_QH
    a["imbalance_mwh"] = (a["actual_mwh"] - a["position_mwh"]).where(~a["redispatched"], 0.0)
    a["price_eur_mwh"], a["price_source"] = _imbalance_price(a["qh"], a["imbalance_mwh"], prices)
    a["cost_eur"] = (-a["imbalance_mwh"] * a["price_eur_mwh"]).where(~a["redispatched"], 0.0)

    # --- trading (domain.md 3)
    private = read_trades(day_dir, "private")
    public = read_trades(day_dir, "public")
    qhs = pd.Index(sorted(set(keys["qh"]) | set(private["qh"]) | set(public["qh"])), dtype=np.int64, name="qh")
    books = pd.concat([_trading_book(private, qhs, public=False), _trading_book(public, qhs, public=True)])
    trading = books.reset_index().sort_values(["qh", "book"], kind="stable").reset_index(drop=True)

    # --- portfolio (domain.md 4; interpretations.md: sums over the assets that have the value)
    g = a.groupby("qh")
    p = pd.DataFrame(index=qhs)
    p["best_of_infeed_kw"] = g["best_kw"].sum(min_count=1).reindex(qhs)
    p["latest_forecast_kw"] = g["latest_kw"].sum(min_count=1).reindex(qhs)
    p["tradeable_forecast_kw"] = g["tradeable_kw"].sum(min_count=1).reindex(qhs)
    p["net_sold_mwh"] = books.loc[books["book"] == "private", "net_mwh"].reindex(qhs).fillna(0.0)
    # a redispatched asset counts as delivering its position (domain.md 4, second edition)
    p["balanced_mwh"] = (a.loc[a["redispatched"], "tradeable_kw"] * KW_TO_MWH_PER_QH).groupby(
        a.loc[a["redispatched"], "qh"]).sum().reindex(qhs).fillna(0.0)
    p["imbalance_mwh"] = p["best_of_infeed_kw"] * KW_TO_MWH_PER_QH + p["balanced_mwh"] - p["net_sold_mwh"]
    p = p.reset_index()
    p["imbalance_price_eur_mwh"], p["imbalance_price_source"] = _imbalance_price(p["qh"], p["imbalance_mwh"], prices)
    p["imbalance_cost_eur"] = -p["imbalance_mwh"] * p["imbalance_price_eur_mwh"]

    # --- output: contract columns, ISO times
    for df in (a, trading, p):
        df["delivery_start"] = _iso(df["qh"])
    a["latest_version"] = _iso(a["latest_version"])
    a["tradeable_version"] = _iso(a["tradeable_version"])
    tables = {"forecast_qh.csv": a, "infeed_qh.csv": a, "trading_qh.csv": trading,
              "asset_imbalance_qh.csv": a, "portfolio_qh.csv": p}
    out = {}
    for name, df in tables.items():
        table = df[CONTRACT[name]].reset_index(drop=True).copy()
        for col in table.columns:
            if col in ("asset_id", "delivery_start", "book", "best_source", "price_source",
                       "imbalance_price_source", "latest_version", "tradeable_version"):
                table[col] = table[col].astype(object)
            elif col == "redispatched":
                table[col] = table[col].astype(bool)
            else:
                table[col] = table[col].astype(float)
        out[name] = table
    return out


def write_reference(day_dir: Path, out_dir: Path) -> None:
    """Writes the reference tables as CSV (handy to diff by eye against an export)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in compute_reference(day_dir).items():
        table.to_csv(out_dir / name, index=False)


if __name__ == "__main__":  # python tests/reference.py DAY_DIR OUT_DIR
    import sys

    write_reference(Path(sys.argv[1]), Path(sys.argv[2]))
