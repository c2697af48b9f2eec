"""Compares exported result files (contract.md) with the reference tables of ``reference.py``.

``compare_results(actual_dir, reference)`` returns human-readable mismatch lines (empty = equal):
- every contract column present, in contract order, at the start of the header (extra trailing
  columns are allowed);
- the same set of keys (missing and extra keys reported with a few examples), no duplicated key;
- per key, equal values: numbers within ``tol`` absolute or relative, empty == empty (NaN), text
  equal, booleans equal whether written ``true``/``True``/``1``, times equal as instants whatever
  the ISO 8601 spelling (``Z`` or ``+00:00``).

``assert_results_equal(actual_dir, reference)`` raises an AssertionError with at most ~30 lines.
Self-contained on purpose: it needs only pandas and the reference tables themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

KEYS: dict[str, list[str]] = {
    "forecast_qh.csv": ["asset_id", "delivery_start"],
    "infeed_qh.csv": ["asset_id", "delivery_start"],
    "trading_qh.csv": ["delivery_start", "book"],
    "asset_imbalance_qh.csv": ["asset_id", "delivery_start"],
    "portfolio_qh.csv": ["delivery_start"],
}
TIME_COLUMNS = {"delivery_start", "latest_version", "tradeable_version"}
EXAMPLES = 5  # examples shown per kind of mismatch
MAX_ASSERT_LINES = 30

_TRUE = {"true", "t", "1", "1.0", "yes"}
_FALSE = {"false", "f", "0", "0.0", "no"}


def _canonical_time(values: pd.Series) -> pd.Series:
    """ISO 8601 text -> canonical ``YYYY-MM-DDTHH:MM:SS[.fff]Z``; unparseable text is kept as is."""
    text = values.astype(object).where(values.notna(), None)
    stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    whole = stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frac = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.rstrip("0") + "Z"
    canonical = whole.where(stamps.dt.microsecond.fillna(0) == 0, frac)
    return canonical.where(stamps.notna(), values)


def _as_bool(values: pd.Series) -> pd.Series:
    """true/True/1/false/False/0 (or real bools) -> bool; anything else kept as its text."""
    def one(v):
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.nan
        s = str(v).strip().lower()
        return True if s in _TRUE else False if s in _FALSE else str(v)
    return values.map(one).astype(object)


def _kind(reference: pd.DataFrame, column: str) -> str:
    if column in TIME_COLUMNS:
        return "time"
    dtype = reference[column].dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    return "text"


def _normalise(values: pd.Series, kind: str) -> pd.Series:
    if kind == "time":
        return _canonical_time(values)
    if kind == "bool":
        return _as_bool(values)
    if kind == "number":
        return pd.to_numeric(values, errors="coerce").astype(float)
    return values.astype(object).where(values.notna(), np.nan)


def _read_actual(path: Path) -> pd.DataFrame:
    """An exported CSV as text, empty cells as NaN."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    return df.replace("", np.nan)


def _equal(expected: pd.Series, actual: pd.Series, actual_raw: pd.Series, kind: str, tol: float) -> np.ndarray:
    """Elementwise equality; emptiness is judged on the raw text, so ``abc`` never equals empty."""
    both_empty = expected.isna().to_numpy() & actual_raw.isna().to_numpy()
    if kind == "number":
        e, a = expected.to_numpy(dtype=float), actual.to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            diff = np.abs(e - a)
            close = (diff <= tol) | (diff <= tol * np.maximum(np.abs(e), np.abs(a)))
        return both_empty | close
    same = np.array([x == y for x, y in zip(expected.tolist(), actual.tolist(), strict=True)], dtype=bool)
    return both_empty | same


def _show(value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "<empty>"
    return repr(value)


def _compare_file(name: str, raw: pd.DataFrame, reference: pd.DataFrame, tol: float) -> list[str]:
    """Mismatch lines of one exported table ``raw`` (text, empty = NaN) against its reference."""
    lines: list[str] = []
    expected_cols = list(reference.columns)
    header = list(raw.columns)
    if header[: len(expected_cols)] != expected_cols:
        lines.append(f"{name}: columns must start with {expected_cols}, got {header}")
    keys = KEYS.get(name, expected_cols[:1])
    absent = [c for c in expected_cols if c not in header]
    if absent:
        lines.append(f"{name}: missing columns {absent}")
    if any(k not in header for k in keys):
        return lines + [f"{name}: cannot compare values without the key columns {keys}"]

    kinds = {c: _kind(reference, c) for c in expected_cols}
    ref = pd.DataFrame({c: _normalise(reference[c], kinds[c]) for c in expected_cols})
    act = pd.DataFrame({c: _normalise(raw[c], kinds[c]) for c in expected_cols if c in header})
    act_raw = raw[[c for c in expected_cols if c in header]]

    duplicated = act.duplicated(keys, keep=False)
    if duplicated.any():
        examples = act.loc[duplicated, keys].drop_duplicates().head(EXAMPLES).to_dict("records")
        lines.append(f"{name}: {int(duplicated.sum())} rows share a key, e.g. {examples}")
        act, act_raw = act[~act.duplicated(keys)], act_raw[~act.duplicated(keys)]

    value_cols = [c for c in expected_cols if c not in keys and c in act.columns]
    right = act[keys + value_cols].copy()
    for c in value_cols:
        right[c + "__raw"] = act_raw[c].to_numpy()
    both = ref.merge(right, on=keys, how="outer", suffixes=("", "__act"), indicator=True, sort=True)
    for side, where in (("left_only", "missing from the export"), ("right_only", "not in the reference")):
        rows = both.loc[both["_merge"] == side, keys]
        if len(rows):
            examples = [tuple(r) for r in rows.head(EXAMPLES).itertuples(index=False)]
            lines.append(f"{name}: {len(rows)} keys {where}, e.g. {examples}")
    common = both[both["_merge"] == "both"].reset_index(drop=True)
    for col in value_cols:
        bad = ~_equal(common[col], common[col + "__act"], common[col + "__raw"], kinds[col], tol)
        if not bad.any():
            continue
        lines.append(f"{name}: column {col}: {int(bad.sum())} of {len(common)} values differ")
        for i in np.flatnonzero(bad)[:EXAMPLES]:
            key = {k: common.at[i, k] for k in keys}
            lines.append(f"  {name} {key} {col}: expected {_show(common.at[i, col])}, "
                         f"got {_show(common.at[i, col + '__raw'])}")
    return lines


def compare_results(actual_dir: Path, reference: dict[str, pd.DataFrame], tol: float = 1e-6) -> list[str]:
    """Mismatch lines between the CSV files in ``actual_dir`` and ``reference`` (empty list = equal)."""
    actual_dir = Path(actual_dir)
    lines: list[str] = []
    for name, ref in reference.items():
        path = actual_dir / name
        if not path.is_file():
            lines.append(f"{name}: file missing in {actual_dir}")
            continue
        try:
            raw = _read_actual(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            lines.append(f"{name}: cannot be read: {exc}")
            continue
        lines.extend(_compare_file(name, raw, ref, tol))
    return lines


def assert_results_equal(actual_dir: Path, reference: dict[str, pd.DataFrame], files=None, tol: float = 1e-6) -> None:
    """Raises AssertionError listing (at most ~30 lines of) the mismatches; ``files`` limits the check."""
    if files is not None:
        reference = {name: reference[name] for name in files}
    lines = compare_results(actual_dir, reference, tol=tol)
    if lines:
        shown = lines[:MAX_ASSERT_LINES]
        if len(lines) > MAX_ASSERT_LINES:
            shown.append(f"... and {len(lines) - MAX_ASSERT_LINES} more lines")
        raise AssertionError("exported results differ from the reference:\n" + "\n".join(shown))
