"""Kernel-side cost of one AttentionExplorer update (8 heads x 32 tokens by default).

The explorer draws in the browser; the kernel only answers the controls that
need new weights: scale, mask and valid keys. One update is what such a
change costs the kernel: recompute the codes of every head from the scores
kept in memory, and serialise the message (state and binary buffers) for the
browser, timed up to the comm's ``send``. Hover, head, layer and view changes
cost the kernel nothing (they never reach it); the browser's own drawing is
measured by ``benchmarks/bench_explorer_browser.py``.

    python benchmarks/bench_widget.py [--heads 8] [--tokens 32] [--repeats 30] [--json out.json]

Prints one line per kind of update (median and 90th percentile in ms), the
bytes sent per update, and the target, 50 ms per update on a 2-core CPU.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # mhacourse, tests

import matplotlib

matplotlib.use("Agg")

import mlx.core as mx

from mhacourse import MultiHeadAttention
from mhacourse.viz import AttentionExplorer
from tests.widget_comm import RecordingComm, recording_comms

TARGET_MS = 50.0


def _time_updates(explorer, name, values, repeats):
    times = []
    for i in range(repeats):
        value = values[i % len(values)]
        start = time.perf_counter()
        setattr(explorer, name, value)  # the observer computes and sends synchronously
        times.append((time.perf_counter() - start) * 1e3)
    return times


def run(heads=8, tokens=32, repeats=30, seed=0):
    """Time each kind of kernel-side update; returns a dict with one row per kind."""
    mx.random.seed(seed)
    dims = 64 * heads
    layer = MultiHeadAttention(dims, heads)
    x = mx.random.normal((1, tokens, dims))
    words = [f"tok{i}" for i in range(tokens)]
    with recording_comms() as comms:
        start = time.perf_counter()
        explorer = AttentionExplorer(layer, x, tokens=words)
        first_ms = (time.perf_counter() - start) * 1e3
        comm = next(c for c in comms if "_meta" in c.opened["data"]["state"])
        first_bytes = sum(memoryview(b).nbytes for b in comm.opened["buffers"])
        scale = math.sqrt(1 / (dims // heads))  # the layer attends with sqrt(1 / D_h)
        scales = [scale * f for f in (0.5, 1.0, 1.5, 2.0, 3.0)]
        rows = [_row("scale", _time_updates(explorer, "scale", scales, repeats), comm)]
        rows.append(_row("mask", _time_updates(explorer, "mask", ["causal", "padding", "none"], repeats), comm))
        explorer.mask = "padding"
        rows.append(_row("valid keys (padding)", _time_updates(
            explorer, "valid_keys", list(range(max(1, tokens // 2), tokens + 1)), repeats), comm))
    return {"heads": heads, "tokens": tokens, "repeats": repeats, "first_render_ms": first_ms,
            "first_message_bytes": first_bytes, "target_ms": TARGET_MS, "cpu_count": os.cpu_count(),
            "updates": rows}


def _row(name, times, comm):
    ordered = sorted(times)
    return {"update": name, "median_ms": statistics.median(times),
            "p90_ms": ordered[int(0.9 * (len(ordered) - 1))], "max_ms": ordered[-1],
            "bytes": RecordingComm.size(*comm.messages[-1])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    result = run(args.heads, args.tokens, args.repeats)

    print(f"AttentionExplorer kernel-side update latency: {args.heads} heads x {args.tokens} tokens, "
          f"{args.repeats} updates each, {result['cpu_count']} CPUs, MLX {mx.__version__} on {mx.default_device()}")
    print(f"first render (construction): {result['first_render_ms']:.1f} ms, "
          f"{result['first_message_bytes'] / 1e6:.2f} MB of weights in the first message")
    print(f"{'update':<26}{'median ms':>10}{'p90 ms':>10}{'max ms':>10}{'MB sent':>10}")
    for row in result["updates"]:
        print(f"{row['update']:<26}{row['median_ms']:>10.1f}{row['p90_ms']:>10.1f}{row['max_ms']:>10.1f}"
              f"{row['bytes'] / 1e6:>10.2f}")
    print("head, layer, query, view, zoom: drawn in the browser, no kernel work")
    worst = max(row["median_ms"] for row in result["updates"])
    verdict = "within" if worst <= TARGET_MS else "OVER"
    print(f"slowest median {worst:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
