#!/usr/bin/env python3
"""Draws voxshm-latency's CSV (with the iceoryx2 rows, if any) as an SVG of
horizontal bars on a log scale: the busy-poll round trip (median, lower is
better) and the 4 KiB header-only stream (payloads per second, higher is
better), one bar per mechanism. Uses only the Python standard library.

    python3 bench/plot_latency.py docs/latency.csv docs/latency.svg
"""

import argparse
import csv
import math
import sys
from xml.sax.saxutils import escape

MECHANISMS = [
    ("voxshm", "voxshm (ring path)", "#0072B2"),
    ("voxshm-socket", "voxshm, socket path", "#56B4E9"),
    ("iceoryx2", "iceoryx2 0.10", "#CC79A7"),
    ("unix-socket", "Unix socket (copies)", "#D55E00"),
    ("shm-ring", "bare shared-memory ring", "#555555"),
    ("shm-pingpong", "shared-memory ping-pong", "#999999"),
]

# (title, shape, variant, size, value column, unit, scale)
PANELS = [
    ("round trip, busy-poll, 64 B: median µs (lower is better)",
     "roundtrip", "busy", "64", "median_us", "µs", 1.0),
    ("round trip, busy-poll, 4 KiB: median µs (lower is better)",
     "roundtrip", "busy", "4096", "median_us", "µs", 1.0),
    ("stream of 4 KiB, header only, busy-poll: million payloads/s (higher is better)",
     "stream-header", "busy", "4096", "payloads_per_s", "M/s", 1e-6),
    ("stream of 4 KiB, header only, blocking: million payloads/s (higher is better)",
     "stream-header", "block", "4096", "payloads_per_s", "M/s", 1e-6),
]

WIDTH, LABEL_W, BAR_H, GAP, TITLE_H, PAD = 760, 190, 16, 4, 26, 14


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("svg")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.csv, newline="")))
    out = []
    y = PAD
    for title, shape, variant, size, col, unit, scale in PANELS:
        vals = []
        for mech, label, colour in MECHANISMS:
            for r in rows:
                if (r["mechanism"], r["shape"], r["variant"], r["size"]) == (mech, shape, variant, size):
                    if r[col]:
                        vals.append((label, colour, float(r[col]) * scale))
        if not vals:
            continue
        out.append(f'<text x="{PAD}" y="{y + 16}" font-weight="bold">{escape(title)}</text>')
        y += TITLE_H
        lo = min(v for _, _, v in vals) / 2
        hi = max(v for _, _, v in vals) * 1.6
        span = math.log10(hi) - math.log10(lo)
        plot_w = WIDTH - LABEL_W - 2 * PAD - 60
        for label, colour, v in vals:
            w = max(1.0, plot_w * (math.log10(v) - math.log10(lo)) / span)
            out.append(f'<text x="{PAD + LABEL_W - 6}" y="{y + BAR_H - 4}" text-anchor="end">{escape(label)}</text>')
            out.append(f'<rect x="{PAD + LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colour}"/>')
            out.append(f'<text x="{PAD + LABEL_W + w + 4:.1f}" y="{y + BAR_H - 4}">{v:.3g} {unit}</text>')
            y += BAR_H + GAP
        y += PAD
    height = y + PAD
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        *out,
        f'<text x="{WIDTH - PAD}" y="{height - 4}" text-anchor="end" fill="#666">log scale; '
        f'two pinned processes on the 2-core development VM</text>',
        "</svg>",
    ]
    with open(a.svg, "w") as f:
        f.write("\n".join(svg) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
