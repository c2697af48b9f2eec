"""What the health page and ``intraday status`` read: the sink's recent latency and the
consumers' lag and changelog sizes on the broker."""

from __future__ import annotations

from intraday.contract import topics
from intraday.platform.kafka import admin, high_watermarks, lag


def recent_latency_ms(conn) -> dict | None:
    """Publication -> database latency over the sink's batches of the last 5 minutes (of its
    own activity): batches, median p50, worst p99 and max, in ms; None before the first."""
    row = conn.execute(
        "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY p50_ms), max(p99_ms), max(max_ms) "
        "FROM sink_latency WHERE at > (SELECT max(at) FROM sink_latency) - interval '5 minutes'"
    ).fetchone()
    return {"batches": row[0], "p50": row[1], "p99": row[2], "max": row[3]} if row and row[0] else None


def broker_health(bootstrap: str) -> dict:
    """Consumer lag per group and the records in each Faust table's changelog (what a restarted
    worker reads back to recover; Tansu does not compact, so it only grows until a restart)."""
    out: dict = {"lag": {}, "changelog_records": {}}
    for group, names in ((topics.PROCESSOR_GROUP, topics.PROCESSOR_TOPICS), (topics.SINK_GROUP, topics.SINK_TOPICS)):
        out["lag"][group] = sum(lag(bootstrap, group, names).values())
    prefix, suffix = f"{topics.PROCESSOR_GROUP}-", "-changelog"
    changelogs = sorted(t for t in admin(bootstrap).list_topics(timeout=5).topics
                        if t.startswith(prefix) and t.endswith(suffix))
    for (topic, _p), end in high_watermarks(bootstrap, changelogs).items():
        table = topic[len(prefix):-len(suffix)]
        out["changelog_records"][table] = out["changelog_records"].get(table, 0) + end
    return out
