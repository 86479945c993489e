#!/usr/bin/env python3
"""Draws voxshm-bench's CSV as an SVG chart: median per-message time
against payload size, on log-log axes, one line per mechanism, one panel
per mode (transport and full). Uses only the Python standard library.

    python3 bench/plot.py docs/benchmarks.csv docs/benchmarks.svg
"""

import argparse
import csv
import math
import sys
from collections import defaultdict
from xml.sax.saxutils import escape

MODES = [
    ("transport", "transport mode: 64-byte header written and read"),
    ("full", "full mode: every byte written and checksummed"),
]

# Order, label and colour of each mechanism (colour-blind-safe palette).
MECHANISMS = [
    ("voxshm", "voxshm", "#0072B2"),
    ("unix_stream", "unix stream socket", "#D55E00"),
    ("pipe", "pipe", "#E69F00"),
    ("memfd_per_msg", "memfd per message", "#009E73"),
    ("in_process", "in-process ceiling", "#555555"),
]
MARKERS = ["circle", "square", "diamond", "triangle", "cross"]

PANEL_W, PANEL_H = 470, 380
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 78, 20, 48, 56
GAP = 30
LEGEND_H = 60


def size_label(n):
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def time_label(us):
    if us >= 1e6:
        return f"{us / 1e6:g} s"
    if us >= 1e3:
        return f"{us / 1e3:g} ms"
    if us >= 1:
        return f"{us:g} \u00b5s"
    return f"{us * 1e3:g} ns"


def read_rows(path):
    rows = defaultdict(dict)  # (mode, mechanism) -> {payload: median_us}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            median = float(r["median_us"])
            if median > 0:
                rows[(r["mode"], r["mechanism"])][int(r["payload_bytes"])] = median
    return rows


def marker(kind, x, y, colour):
    s = 4.5
    if kind == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{s}" fill="{colour}"/>'
    if kind == "square":
        return (f'<rect x="{x - s:.1f}" y="{y - s:.1f}" width="{2 * s}" height="{2 * s}" '
                f'fill="{colour}"/>')
    if kind == "diamond":
        d = s * 1.3
        return (f'<polygon points="{x:.1f},{y - d:.1f} {x + d:.1f},{y:.1f} {x:.1f},{y + d:.1f} '
                f'{x - d:.1f},{y:.1f}" fill="{colour}"/>')
    if kind == "triangle":
        d = s * 1.3
        return (f'<polygon points="{x:.1f},{y - d:.1f} {x + d:.1f},{y + d * 0.8:.1f} '
                f'{x - d:.1f},{y + d * 0.8:.1f}" fill="{colour}"/>')
    return (f'<path d="M{x - s:.1f},{y - s:.1f}L{x + s:.1f},{y + s:.1f}M{x - s:.1f},{y + s:.1f}'
            f'L{x + s:.1f},{y - s:.1f}" stroke="{colour}" stroke-width="2.2"/>')


def panel(out, ox, oy, mode, title, rows, sizes, y_lo, y_hi):
    """One panel with its axes, grid and lines; (ox, oy) is its top left."""
    x0, x1 = ox + MARGIN_L, ox + PANEL_W - MARGIN_R
    y0, y1 = oy + MARGIN_T, oy + PANEL_H - MARGIN_B
    lx_lo, lx_hi = math.log2(sizes[0]), math.log2(sizes[-1])
    if lx_hi == lx_lo:
        lx_lo, lx_hi = lx_lo - 1, lx_hi + 1
    pad = (lx_hi - lx_lo) * 0.05
    lx_lo, lx_hi = lx_lo - pad, lx_hi + pad

    def px(v):
        return x0 + (math.log2(v) - lx_lo) / (lx_hi - lx_lo) * (x1 - x0)

    def py(v):
        return y1 - (math.log10(v) - y_lo) / (y_hi - y_lo) * (y1 - y0)

    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{oy + 22}" text-anchor="middle" '
               f'font-size="14" font-weight="bold">{escape(title)}</text>')
    out.append(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="white" '
               f'stroke="#333"/>')
    for d in range(y_lo, y_hi + 1):
        y = py(10.0 ** d)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{escape(time_label(10.0 ** d))}</text>')
        if d < y_hi:
            for k in range(2, 10):
                yk = py(k * 10.0 ** d)
                out.append(f'<line x1="{x0}" y1="{yk:.1f}" x2="{x0 + 4}" y2="{yk:.1f}" '
                           f'stroke="#999"/>')
    for s in sizes:
        x = px(s)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{y1 + 16}" text-anchor="middle" font-size="11">'
                   f'{escape(size_label(s))}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y1 + 38}" text-anchor="middle" '
               f'font-size="12">payload size (log scale)</text>')
    cy = (y0 + y1) / 2
    out.append(f'<text x="{ox + 16}" y="{cy:.1f}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 {ox + 16} {cy:.1f})">median time per message '
               f'(log scale)</text>')
    for (name, _label, colour), kind in zip(MECHANISMS, MARKERS):
        pts = sorted(rows.get((mode, name), {}).items())
        if not pts:
            continue
        coords = [(px(s), py(t)) for s, t in pts]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        dash = ' stroke-dasharray="6 4"' if name == "in_process" else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                   f'stroke-width="2"{dash}/>')
        for x, y in coords:
            out.append(marker(kind, x, y, colour))


def render(rows, title):
    sizes = sorted({s for series in rows.values() for s in series})
    times = [t for series in rows.values() for t in series.values()]
    if not sizes or not times:
        raise SystemExit("plot.py: no rows with a positive median_us in the CSV")
    y_lo = math.floor(math.log10(min(times)))
    y_hi = math.ceil(math.log10(max(times)))
    if y_hi == y_lo:
        y_hi += 1
    modes = [(m, t) for m, t in MODES if any(k[0] == m for k in rows)]
    width = len(modes) * PANEL_W + (len(modes) - 1) * GAP + 20
    height = 40 + PANEL_H + LEGEND_H
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="16" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    for i, (mode, panel_title) in enumerate(modes):
        panel(out, 10 + i * (PANEL_W + GAP), 32, mode, panel_title, rows, sizes, y_lo, y_hi)
    present = [m for m in MECHANISMS if any(k[1] == m[0] for k in rows)]
    step = width / max(len(present), 1)
    ly = 40 + PANEL_H + 30
    for i, (name, label, colour) in enumerate(present):
        kind = MARKERS[[m[0] for m in MECHANISMS].index(name)]
        lx = i * step + 20
        dash = ' stroke-dasharray="6 4"' if name == "in_process" else ""
        out.append(f'<line x1="{lx:.1f}" y1="{ly}" x2="{lx + 30:.1f}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(marker(kind, lx + 15, ly, colour))
        out.append(f'<text x="{lx + 38:.1f}" y="{ly + 4}" font-size="12">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="CSV written by voxshm-bench --csv")
    ap.add_argument("svg", help="SVG file to write")
    ap.add_argument("--title", default="voxshm-bench: median time per message")
    a = ap.parse_args(argv)
    svg = render(read_rows(a.csv), a.title)
    with open(a.svg, "w") as f:
        f.write(svg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
