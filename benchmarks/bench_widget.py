"""Latency of one AttentionExplorer update (8 heads x 32 tokens by default).

One update is what a moved control costs on the kernel side: recompute the
weights from the scores (``mhacourse.attention_weights``), repaint the PNG and
rebuild the bar and number panels. The browser's own drawing is not included.

    python benchmarks/bench_widget.py [--heads 8] [--tokens 32] [--repeats 30] [--json out.json]

Prints one line per kind of update (median and 90th percentile in ms) and the
target, 50 ms per update on a 2-core CPU.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import mlx.core as mx  # noqa: E402

from mhacourse import MultiHeadAttention  # noqa: E402
from mhacourse.viz import AttentionExplorer  # noqa: E402

TARGET_MS = 50.0


def _time_updates(explorer, control, values, repeats):
    times = []
    for i in range(repeats):
        value = values[i % len(values)]
        start = time.perf_counter()
        control.value = value  # the observer runs the whole update synchronously
        times.append((time.perf_counter() - start) * 1e3)
    return times


def run(heads=8, tokens=32, repeats=30, seed=0):
    """Time each kind of update; returns a list of dicts (one per kind)."""
    mx.random.seed(seed)
    dims = 16 * heads
    layer = MultiHeadAttention(dims, heads)
    x = mx.random.normal((1, tokens, dims))
    words = [f"tok{i}" for i in range(tokens)]

    start = time.perf_counter()
    explorer = AttentionExplorer(layer, x, tokens=words)
    first_ms = (time.perf_counter() - start) * 1e3
    explorer.head_selector.value = -1  # draw the grid frame once, outside the timings
    explorer.head_selector.value = 0

    scale = layer.scale
    scales = [scale * f for f in (0.5, 1.0, 1.5, 2.0, 3.0)]
    cases = [
        ("scale (one head)", explorer.scale_slider, scales),
        ("head", explorer.head_selector, list(range(heads))),
        ("query token", explorer.query_selector, list(range(tokens))),
        ("mask", explorer.mask_selector, ["causal", "padding", "none"]),
        ("valid keys (padding)", explorer.valid_keys_slider, list(range(tokens // 2, tokens + 1))),
    ]
    rows = []
    for name, control, values in cases:
        if name.startswith("valid keys"):
            explorer.mask_selector.value = "padding"
        times = _time_updates(explorer, control, values, repeats)
        rows.append(_row(name, times))
    explorer.mask_selector.value = "none"
    explorer.head_selector.value = -1
    rows.append(_row("scale (all heads grid)", _time_updates(explorer, explorer.scale_slider, scales, repeats)))
    return {"heads": heads, "tokens": tokens, "repeats": repeats, "first_render_ms": first_ms,
            "target_ms": TARGET_MS, "cpu_count": os.cpu_count(), "updates": rows}


def _row(name, times):
    ordered = sorted(times)
    return {"update": name, "median_ms": statistics.median(times),
            "p90_ms": ordered[int(0.9 * (len(ordered) - 1))], "max_ms": ordered[-1]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    result = run(args.heads, args.tokens, args.repeats)

    print(f"AttentionExplorer update latency: {args.heads} heads x {args.tokens} tokens, "
          f"{args.repeats} updates each, {result['cpu_count']} CPUs, MLX {mx.__version__} on {mx.default_device()}")
    print(f"first render (construction): {result['first_render_ms']:.1f} ms")
    print(f"{'update':<26}{'median ms':>10}{'p90 ms':>10}{'max ms':>10}")
    for row in result["updates"]:
        print(f"{row['update']:<26}{row['median_ms']:>10.1f}{row['p90_ms']:>10.1f}{row['max_ms']:>10.1f}")
    worst = max(row["median_ms"] for row in result["updates"])
    verdict = "within" if worst <= TARGET_MS else "OVER"
    print(f"slowest median {worst:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
