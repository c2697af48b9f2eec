"""The results as bench/results.md."""

from __future__ import annotations

from typing import Any


def _fmt(v, nd=0) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and nd == 0:
        return f"{v:,}"
    return f"{v:,.{nd}f}"


def _mem(peaks: dict[str, float]) -> str:
    parts = []
    for k in sorted(peaks):
        if k.endswith("_rss_sum"):
            continue
        label = k.replace("_pss_sum", " (PSS sum)")
        parts.append(f"{label} {peaks[k]:,.0f}")
    return ", ".join(parts)


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    pk = m["packages"]
    code = r.get("code_at_start") or {}
    ver = f"commit {code.get('commit')}" + (" + local changes" if code.get("modified_outside_bench") else "")
    lines = [
        f"Measured {m['date']} ({ver}) by `bench/run.py`{' --quick' if r.get('quick') else ''} "
        f"(total {r.get('runtime_s', 0) / 60:.1f} min) on {m['cpu']}, {m['cores_logical']} cores, "
        f"{m['ram_gib']} GiB RAM, Python {m['python']}; "
        + ", ".join(f"{p} {v}" for p, v in pk.items() if v) + ". "
        f"Database: {r.get('database')}. The machine is shared: compare the ratios (measured in the same run), "
        f"not the absolute numbers, across machines.",
        "",
    ]
    e2e = r.get("e2e") or []
    if e2e:
        lines += [
            "**End to end** (`--speed max`, replay start → drained: every result in PostgreSQL; "
            "1 worker, 4 partitions; peak memory in MiB, sampled every 0.2 s)",
            "",
            "| day (assets × public trades) | events | wall s (sources consumed) | events/s | batch reference s "
            "| pipeline / reference | equal to reference | peak MiB: worker / sink / broker / postgres (PSS) / orchestrator "
            "| CPU s: worker / sink / broker / postgres / orchestrator | load avg (1 min) before → after |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
        ]
        for e in e2e:
            pm = e.get("peak_mib", {})
            mem = " / ".join(_fmt(pm.get(k)) for k in ("worker", "sink", "broker", "postgres_pss_sum", "orchestrator"))
            cpu = " / ".join(_fmt((e.get("cpu_s") or {}).get(k), 1) for k in ("worker", "sink", "broker", "postgres",
                                                                             "orchestrator"))
            src = f" ({_fmt(e['sources_consumed_s'], 1)})" if e.get("sources_consumed_s") is not None else ""
            lines.append(f"| {e['assets']} × {e['public_trades']:,} | {e['events']:,} | {_fmt(e['wall_s'], 1)}{src} "
                         f"| {_fmt(e['events_per_s'])} | {_fmt(e['reference_s'], 1)} "
                         f"| {_fmt(e['ratio_wall_to_reference'], 1)}× | {_fmt(e['equal'])} | {mem} | {cpu} "
                         f"| {_fmt((e.get('load_avg_1m') or [None])[0], 1)} → "
                         f"{_fmt((e.get('load_avg_1m') or [None, None])[1], 1)} |")
        lines.append("")
    for s in r.get("skipped", []):
        lines.append(f"- skipped {s['size']}: {s['reason']}")
    if r.get("skipped"):
        lines.append("")
    lat = r.get("latency")
    if lat and "latency_ms" in lat:
        lines += [
            f"**Latency** at `--speed 60` ({lat['size']} day, {lat['from']} – {lat['to']} event time, "
            f"{lat['events_in_slice']:,} events, after a warm-up replay of the day before it): event handed to "
            f"the producer → its (key, known_at) row visible in PostgreSQL, polled every {lat['poll_interval_ms']} ms",
            "",
            "| result rows | count | p50 ms | p95 ms | p99 ms | max ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for t in ("asset_qh", "portfolio_qh", "all", "event: first row", "event: last row"):
            v = lat["latency_ms"].get(t)
            if v:
                lines.append(f"| {t} | {v['count']:,} | {_fmt(v['p50'])} | {_fmt(v['p95'])} | {_fmt(v['p99'])} "
                             f"| {_fmt(v['max'])} |")
        dq = lat.get("dashboard_queries_ms", {})
        lines += ["", "Rows: every new (key, known_at) row of the table. Events: per distinct event time in "
                      "the slice, until the first / the last row carrying it (one forecast version updates "
                      "~190 QH rows at once).",
                  "", f"On top, the dashboard's full query set for the day takes {_fmt(dq.get('median'), 1)} ms "
                      f"(median), plus up to one 2 s refresh tick.", ""]
    sc = r.get("scaling")
    if sc and sc.get("runs"):
        lines += [f"**Scaling** ({sc['size']} day, {sc['partitions']} partitions, on {m['cores_logical']} cores; "
                  f"runs interleaved in the order shown)", "",
                  "| run | workers | events/s | wall s | equal to reference | peak MiB per worker | CPU s per worker "
                  "| CPU s broker | load avg (1 min) before → after |",
                  "| ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- |"]
        for x in sc["runs"]:
            pm = x.get("peak_mib", {})
            wm = " / ".join(_fmt(v) for k, v in sorted(pm.items()) if k.startswith("worker"))
            cs = x.get("cpu_s") or {}
            wc = " / ".join(_fmt(v, 1) for k, v in sorted(cs.items()) if k.startswith("worker"))
            la = x.get("load_avg_1m") or [None, None]
            lines.append(f"| {x.get('order', '')} | {x['workers']} | {_fmt(x['events_per_s'])} | {_fmt(x['wall_s'], 1)} "
                         f"| {_fmt(x['equal'])} | {wm} | {wc} | {_fmt(cs.get('broker'), 1)} "
                         f"| {_fmt(la[0], 1)} → {_fmt(la[1], 1)} |")
        if sc.get("speedup_2_vs_1") is not None:
            med = sc.get("median_events_per_s") or {}
            lines.append(f"\n2 workers vs 1 (median events/s {_fmt(med.get(2) or med.get('2'))} vs "
                         f"{_fmt(med.get(1) or med.get('1'))}): {sc['speedup_2_vs_1']:.2f}× the throughput.")
        lines.append("")
    so = r.get("soak")
    if so and so.get("memory_mib"):
        lines += [
            f"**Soak** ({so['size']} days {' and '.join(so['days'])}, replayed as one stream at {so['speed']:g}x: "
            f"{so['from']} – {so['to']} event time, {so['events']:,} events, {_fmt(so.get('wall_s'), 0)} s; "
            f"processors' state retention {so['state_retention_days']} day, so day one's state is deleted "
            f"while day two runs{'' if so.get('drained', True) else '; the drain check did not finish: ' + so.get('drain_error', '')}). "
            f"RSS in MiB, sampled every 2 s:",
            "",
            "| process | at the end of day one | max on day one | at the end | max | growth on day two |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, v in so["memory_mib"].items():
            lines.append(f"| {name} | {_fmt(v['at_day1_end'])} | {_fmt(v['max_day1'])} | {_fmt(v['at_end'])} "
                         f"| {_fmt(v['max'])} | {_fmt(v['growth_day2'])} |")
        lines += ["", "The broker (Tansu's memory engine) keeps every record and has no retention: its growth "
                  "is by design (embedded-stack.md); the processes of ours should level off.", ""]
    sk = r.get("sink")
    if sk and "write_batch_insert_rows_per_s" in sk:
        lines += [
            f"**Sink alone** ({sk['rows']:,} result rows of the {sk['source']} day: "
            + ", ".join(f"{k} {v:,}" for k, v in sk["rows_per_table"].items()) + ")",
            "",
            "| method | rows/s |",
            "| --- | ---: |",
            f"| `write_batch` (COPY → staging → INSERT … ON CONFLICT, one transaction), empty tables "
            f"| {_fmt(sk['write_batch_insert_rows_per_s'])} |",
            f"| `write_batch`, every row already present (update) | {_fmt(sk['write_batch_upsert_rows_per_s'])} |",
            f"| baseline: one `INSERT … ON CONFLICT` per row, autocommit "
            f"({_fmt(sk['row_by_row_rows'])} rows{', time cap' if sk['row_by_row_capped'] else ''}) "
            f"| {_fmt(sk['row_by_row_rows_per_s'])} |",
            "",
            f"`write_batch` / row by row: {sk['ratio_write_batch_to_row_by_row']:.1f}×.",
            "",
        ]
    d = r.get("dashboard")
    if d and "callback_full_ms" in d:
        lines += [
            f"**Dashboard** main callback, full rebuild of the portfolio tab for a full day ({d['source']} day), "
            f"through Flask's test client as a logged-in user, median of {d['runs']}: "
            f"**{_fmt(d['callback_full_ms']['median'], 1)} ms** (queries {_fmt(d['queries_ms_median'], 1)} ms, "
            f"figures {_fmt(d['figures_ms_median'], 1)} ms, rest: Dash/JSON/auth; response "
            f"{_fmt(d['response_kib'], 0)} KiB); unchanged tick (fingerprint only, HTTP "
            f"{d['callback_unchanged_ms']['status']}): {_fmt(d['callback_unchanged_ms']['median'], 1)} ms.",
            "",
        ]
    prof = r.get("profile")
    if prof:
        lines.append(f"**Profile** (py-spy, {prof.get('size')} run, {prof.get('seconds')} s from "
                     f"{prof.get('delay_s')} s after the replay started; self time by category, % of samples)")
        lines.append("")
        for name, p in prof.get("processes", {}).items():
            if not p.get("ok"):
                lines.append(f"- {name}: no profile ({p.get('error')})")
                continue
            cats = ", ".join(f"{k} {v}%" for k, v in p["self_by_category"].items())
            top = "; ".join(f"{t['frame']} {t['pct']}%" for t in p["top_self_frames"][:5])
            inc = ", ".join(f"{k} {v}%" for k, v in p.get("inclusive", {}).items())
            lines.append(f"- {name} (busy {100 * (p.get('busy_share') or 0):.0f}% of the samples window): {cats}. "
                         f"Top frames: {top}. Inclusive: {inc}.")
        lines.append("")
    for n in r.get("notes", []):
        lines.append(f"- {n}")
    return "\n".join(lines).rstrip() + "\n"
