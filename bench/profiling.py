"""py-spy's collapsed stacks summarised: self time per category, top frames, the inclusive share of marked functions."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from intraday.contract import topics

JOINED = re.compile(r"Joined group '" + re.escape(topics.PROCESSOR_GROUP) + r"' \(generation (\d+)\)")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _norm_file(file: str) -> str:
    """py-spy shows paths relative to their sys.path entry (the repository for ours)."""
    return file.replace("\\", "/")


def _category(func: str, file: str) -> str:
    f = _norm_file(file)
    if f.startswith("selectors") and func.endswith("select"):
        return "idle (waiting in epoll)"
    if "orjson" in f or f.startswith("json/") or "/json/" in f or func in ("_decode_batch", "decode") and "events" in f:
        return "serialisation (JSON)"
    if f.startswith("intraday/sink/") or "/intraday/sink/" in f:
        return "ours (sink)"
    if f.startswith("intraday/") or "/intraday/" in f:
        if f.endswith("events.py"):
            return "serialisation (JSON)"
        return "ours (rules, agents, state)"
    if "psycopg" in f:
        return "database (psycopg)"
    if "confluent_kafka" in f:
        return "broker client (confluent-kafka)"
    if "aiokafka" in f or f.startswith("kafka/"):
        return "broker client (aiokafka)"
    if f.startswith(("faust/", "mode/")) or "/faust/" in f or "/mode/" in f:
        return "Faust / mode (per-event overhead)"
    if f.startswith("asyncio/") or "/asyncio/" in f or f.startswith("selectors") or "uvloop" in f:
        return "event loop (asyncio)"
    if f.startswith(("threading", "concurrent/", "queue")):
        return "threads"
    return "other"


def summarise_profile(raw: str, seconds: float, rate: int, logtext: str = "") -> dict[str, Any]:
    """Collapsed stacks (py-spy ``-f raw``) -> self time per category and top leaf frames, plus the
    inclusive share of a few functions that mark a part of the pipeline."""
    self_cat: Counter = Counter()
    self_frame: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    markers = {
        "agent batches (agents.py)": ("body", "intraday/processing/agents.py"),
        "decode events (wire.decode)": ("decode", "intraday/processing/state/wire.py"),
        "emit and confirm results (Emitter)": (None, "intraday/processing/shell.py"),
        "table writes + changelog (Cache.flush)": ("flush", "intraday/processing/agents.py"),
        "rules (intraday/processing/state/)": (None, "intraday/processing/state/"),
        "faust stream iteration (take_events)": ("take_events", "faust/"),
        "aiokafka fetch/produce": (None, "aiokafka/"),
        "sink write_batch": ("write_batch", "intraday/sink/writer.py"),
        "sink rows_of": ("rows_of", "intraday/sink/writer.py"),
        "sink consume (confluent-kafka)": ("Sink.run", "intraday/sink/writer.py"),
    }
    for line in raw.splitlines():
        line = line.rstrip()
        if not line:
            continue
        stack_text, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = []
        lines_ = []
        for fr in stack_text.split(";"):
            m = _FRAME.match(fr.strip())
            frames.append((m.group("func"), m.group("file")) if m else (fr.strip(), ""))
            lines_.append(m.group("line") if m else None)
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        cat = _category(func, file)
        self_cat[cat] += count
        where = _short(_norm_file(file)) + (f":{lines_[-1]}" if cat.startswith("ours") and lines_[-1] else "")
        self_frame[f"{func} ({where})"] += count
        hit = set()
        for label, (fn, fpath) in markers.items():
            for f_func, f_file in frames:
                if fpath in _norm_file(f_file) and (fn is None or f_func == fn or f_func.endswith("." + fn)):
                    hit.add(label)
                    break
        for label in hit:
            inclusive[label] += count
    if total == 0:
        return {"ok": False, "error": "no samples (process idle or not Python?)", "log": logtext.strip()[-300:]}
    expected = seconds * rate
    idle = self_cat.get("idle (waiting in epoll)", 0)
    return {
        "ok": True, "samples": total, "seconds": seconds, "rate_hz": rate,
        # py-spy drops samples of threads it sees idle (GIL released in a C call); an epoll wait
        # of the event loop is counted as idle here too
        "busy_share": round(min(1.0, (total - idle) / expected), 3) if expected else None,
        "self_by_category": {k: round(100 * v / total, 1) for k, v in self_cat.most_common()},
        "top_other_frames": [{"frame": k, "pct": round(100 * v / total, 1)} for k, v in self_frame.most_common()
                             if _category(*_split_frame(k)) == "other"][:10],
        "top_self_frames": [{"frame": k, "pct": round(100 * v / total, 1)} for k, v in self_frame.most_common(15)],
        "inclusive": {k: round(100 * inclusive[k] / total, 1) for k in markers if inclusive[k]},
    }


def _split_frame(label: str) -> tuple[str, str]:
    m = _FRAME.match(label)
    return (m.group("func"), m.group("file")) if m else (label, "")


def _short(file: str) -> str:
    f = file.replace("\\", "/")
    for marker in ("site-packages/", "lib/python3"):
        if marker in f:
            f = f.split(marker, 1)[1]
    return f


# ---------------------------------------------------------------------------------------------
# 1. end to end
