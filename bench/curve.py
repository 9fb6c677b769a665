#!/usr/bin/env python3
"""Plots how delivery cost grows: events/s and CPU microseconds per event against
partitions, triggers, record size and distinct keys.

    MODE=curve cargo bench --bench delivery | tee curve.txt
    python3 bench/curve.py curve.txt bench/curve.png

Reads the `curve,<dimension>,<value>,<events/s>,<CPU-us per event>` lines of the benchmark's
output. Needs matplotlib (pip install matplotlib).
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TITLES = {
    "partitions": ("partitions (partition order)", "partitions"),
    "triggers": ("triggers on one topic (unordered)", "triggers"),
    "bytes": ("record size (unordered)", "bytes per record"),
    "keys": ("distinct keys (key order)", "keys"),
}


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    source, target = sys.argv[1], sys.argv[2]
    series: dict[str, list[tuple[float, float, float]]] = {}
    with open(source, encoding="utf-8") as lines:
        for line in lines:
            parts = line.strip().split(",")
            if len(parts) != 5 or parts[0] != "curve":
                continue
            _, dimension, value, rate, cpu = parts
            series.setdefault(dimension, []).append((float(value), float(rate), float(cpu)))
    if not series:
        print(f"{source}: no curve lines", file=sys.stderr)
        return 1
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, dimension in zip(axes.flat, TITLES):
        title, label = TITLES[dimension]
        points = sorted(series.get(dimension, []))
        ax.set_title(title)
        if not points:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
            continue
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], "o-", color="tab:blue")
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in xs])
        ax.set_xlabel(label)
        ax.set_ylabel("delivered events/s", color="tab:blue")
        ax.set_ylim(bottom=0)
        cpu = ax.twinx()
        cpu.plot(xs, [p[2] for p in points], "s--", color="tab:red")
        cpu.set_ylabel("CPU µs per event", color="tab:red")
        cpu.set_ylim(bottom=0)
    figure.suptitle("sluice delivery: how cost grows (2 cores, embedded broker, no-op function)")
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
