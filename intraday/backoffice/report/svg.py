"""Charts as inline SVG (no script, no network: the page can be mailed and printed), and the numbers in them."""

from __future__ import annotations

import html
import math
from typing import Any

GOOD, _BAD, TOTAL, GREY = "#2ca02c", "#d62728", "#1f4e79", "#9ecae1"


def fmt(v: Any, digits: int = 2, pct: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if pct:
        return f"{100 * v:,.1f} %"
    return f"{v:,.{digits}f}"


def _scale(lo: float, hi: float, top: float, bottom: float):
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    return lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi == lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _axis(y, ticks: list[float], left: float, right: float, unit: str) -> str:
    e = html.escape
    parts = []
    for t in ticks:
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 4}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="11">'
                     f'{e(fmt(t, 0 if abs(t) >= 10 else 2))}</text>')
    parts.append(f'<text x="{left - 4}" y="{y(ticks[-1]) - 10 if ticks else 30:.1f}" text-anchor="end" '
                 f'font-size="11" fill="#555">{e(unit)}</text>')
    return "".join(parts)


def _title(text: str) -> str:
    return f'<text x="8" y="16" font-size="13" font-weight="600">{html.escape(text)}</text>'


def _plot_area(width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` of a chart's plot: room for the title, the axis labels and,
    below, the category labels or the legend."""
    return 70, width - 10, 40, height - 50


def _svg_open(title: str, width: int, height: int) -> str:
    """The opening ``<svg>`` element of a chart, with its title."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{html.escape(title)}" font-family="system-ui, sans-serif">' + _title(title))


def _zero_line(y, left: float, right: float) -> str:
    return f'<line x1="{left}" x2="{right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>'


def _legend(series: list[tuple[str, list[float | None], str]], left: float, height: int,
            swatch: int, text_dy: int) -> list[str]:
    """One entry per series along the bottom: a swatch ``swatch`` px high in its colour, the name
    with its baseline ``text_dy`` px above the bottom edge."""
    out, lx = [], left
    for name, _, color in series:
        out.append(f'<rect x="{lx}" y="{height - 16}" width="10" height="{swatch}" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="{height - text_dy}" font-size="11">{html.escape(name)}</text>')
        lx += 14 + 7 * len(name) + 20
    return out


def _wrap(label: str, width: int = 14) -> list[str]:
    """A label in lines of at most ``width`` characters (words kept whole)."""
    lines: list[str] = []
    for word in label.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def svg_waterfall(steps: list[dict], title: str, width: int = 760, height: int = 330) -> str:
    """A waterfall chart of ``report[...]['waterfall']``: green up, red down, blue totals."""
    e = html.escape
    left, right, top, bottom = _plot_area(width, height)
    running, bars = 0.0, []
    for s in steps:
        if s["kind"] == "absolute":
            y0, y1 = 0.0, s["eur"]
            running = s["eur"]
        elif s["kind"] == "total":
            y0, y1 = 0.0, running
        else:
            y0, y1 = running, running + s["eur"]
            running = y1
        bars.append((s, y0, y1))
    lo = min(0.0, *(min(b[1], b[2]) for b in bars))
    hi = max(0.0, *(max(b[1], b[2]) for b in bars))
    pad = 0.05 * (hi - lo or 1)
    y = _scale(lo - pad, hi + pad, top, bottom)
    slot = (right - left) / max(1, len(bars))
    out = [_svg_open(title, width, height), _axis(y, _nice_ticks(lo - pad, hi + pad), left, right, "EUR")]
    for i, (s, y0, y1) in enumerate(bars):
        x = left + i * slot + slot * 0.15
        w = slot * 0.7
        color = TOTAL if s["kind"] != "relative" else (GOOD if s["eur"] >= 0 else _BAD)
        top_y, h = min(y(y0), y(y1)), max(1.0, abs(y(y0) - y(y1)))
        out.append(f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{color}">'
                   f'<title>{e(s["label"])}: {e(fmt(s["eur"]))} EUR</title></rect>')
        out.append(f'<text x="{x + w / 2:.1f}" y="{top_y - 3:.1f}" text-anchor="middle" font-size="10">'
                   f'{e(fmt(s["eur"], 0))}</text>')
        lines = "".join(f'<tspan x="{x + w / 2:.1f}" dy="{0 if k == 0 else 11}">{e(t)}</tspan>'
                        for k, t in enumerate(_wrap(s["label"])))
        out.append(f'<text x="{x + w / 2:.1f}" y="{bottom + 13}" text-anchor="middle" font-size="10">{lines}</text>')
    out += [_zero_line(y, left, right), "</svg>"]
    return "".join(out)


def svg_bars(categories: list[str], series: list[tuple[str, list[float | None], str]], title: str, unit: str,
             width: int = 760, height: int = 260) -> str:
    """Grouped vertical bars: one group per category, one bar per series (name, values, colour)."""
    e = html.escape
    left, right, top, bottom = _plot_area(width, height)
    vals = [v for _, vs, _ in series for v in vs if v is not None]
    lo, hi = min(0.0, *vals) if vals else 0.0, max(0.0, *vals) if vals else 1.0
    y = _scale(lo, hi * 1.08 if hi > 0 else hi, top, bottom)
    slot = (right - left) / max(1, len(categories))
    bw = slot * 0.8 / max(1, len(series))
    out = [_svg_open(title, width, height),
           _axis(y, _nice_ticks(lo, hi * 1.08 if hi > 0 else hi), left, right, unit)]
    for i, cat in enumerate(categories):
        for j, (name, vs, color) in enumerate(series):
            v = vs[i]
            if v is None:
                continue
            x = left + i * slot + slot * 0.1 + j * bw
            top_y, h = min(y(0), y(v)), max(1.0, abs(y(0) - y(v)))
            out.append(f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{bw:.1f}" height="{h:.1f}" fill="{color}">'
                       f'<title>{e(cat)} {e(name)}: {e(fmt(v))} {e(unit)}</title></rect>')
        out.append(f'<text x="{left + (i + 0.5) * slot:.1f}" y="{bottom + 14}" text-anchor="middle" '
                   f'font-size="10">{e(cat)}</text>')
    out += _legend(series, left, height, swatch=10, text_dy=7)
    out += [_zero_line(y, left, right), "</svg>"]
    return "".join(out)


def svg_lines(labels: list[str], series: list[tuple[str, list[float | None], str]], title: str, unit: str,
              width: int = 760, height: int = 240) -> str:
    """Lines over the QHs (labels: Berlin HH:MM), gaps where a value is missing."""
    e = html.escape
    left, right, top, bottom = _plot_area(width, height)
    vals = [v for _, vs, _ in series for v in vs if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    y = _scale(lo, hi, top, bottom)
    n = max(1, len(labels) - 1)
    x = lambda i: left + i / n * (right - left)  # noqa: E731
    out = [_svg_open(title, width, height), _axis(y, _nice_ticks(lo, hi), left, right, unit)]
    step = max(1, len(labels) // 8)
    for i in range(0, len(labels), step):
        out.append(f'<text x="{x(i):.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10">{e(labels[i])}</text>')
    for name, vs, color in series:
        path, pen = [], False
        for i, v in enumerate(vs):
            if v is None:
                pen = False
                continue
            path.append(f"{'L' if pen else 'M'}{x(i):.1f},{y(v):.1f}")
            pen = True
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.6">'
                   f'<title>{e(name)}</title></path>')
    out += _legend(series, left, height, swatch=3, text_dy=11)
    out.append("</svg>")
    return "".join(out)
