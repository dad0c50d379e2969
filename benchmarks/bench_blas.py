"""MLX on its own reference BLAS against the optimised one: matmul and attention, same machine.

Each round starts two fresh processes, one per BLAS, alternating, so both see the same
machine load; the report gives the median over rounds.

Usage: python benchmarks/bench_blas.py [--rounds 3] [--json PATH]
"""

import argparse
import json
import sys
import time

import _common

SIZES = (256, 512, 1024)
ATTENTION = dict(batch=1, num_heads=8, length=1024, head_dim=64)


def child():
    """Measure this process (run with the environment of one mode)."""
    import mlx.core as mx

    from mhacourse import blas
    from mhacourse.bench import matmul_gflops, time_function

    result = {"blas": blas.current_blas().as_dict(), "matmul_gflops": {}}
    for size in SIZES:
        result["matmul_gflops"][str(size)] = matmul_gflops(size, mx.float32, repeats=3)
    B, H, L, D = (ATTENTION[k] for k in ("batch", "num_heads", "length", "head_dim"))
    keys = mx.random.split(mx.random.key(0), 3)
    q, k, v = (mx.random.normal((B, H, L, D), key=key) for key in keys)  # (B, H, L, D)
    mx.eval(q, k, v)
    timing = time_function(lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=D**-0.5),
                           repeats=3, warmup=1)
    result["sdpa_ms"] = timing["median_ms"]
    print(json.dumps(result))


def measure(rounds=3):
    """Alternate fresh processes off/on for ``rounds`` rounds; return medians and speed-ups."""
    samples = {mode: [] for mode in _common.MODES}
    for _ in range(rounds):
        for mode in _common.MODES:
            document, _ = _common.run_json([sys.executable, __file__, "--child"], _common.env_for(mode))
            samples[mode].append(document)
    summary = {}
    for mode, documents in samples.items():
        summary[mode] = {
            "blas": documents[-1]["blas"],
            "matmul_gflops": {size: _common.median([d["matmul_gflops"][size] for d in documents])
                              for size in documents[0]["matmul_gflops"]},
            "sdpa_ms": _common.median([d["sdpa_ms"] for d in documents]),
            "rounds": [{"matmul_gflops": d["matmul_gflops"], "sdpa_ms": d["sdpa_ms"]} for d in documents],
        }
    on, off = summary["on"], summary["off"]
    summary["speedup"] = {
        "matmul": {size: on["matmul_gflops"][size] / off["matmul_gflops"][size] for size in on["matmul_gflops"]},
        "sdpa": off["sdpa_ms"] / on["sdpa_ms"],
    }
    summary["attention_shape"] = ATTENTION
    return summary


def format_summary(summary):
    off, on = summary["off"], summary["on"]
    lines = [f"| | {off['blas']['name']} (off) | {on['blas']['name']} (on) | speed-up |", "|---|---|---|---|"]
    for size in off["matmul_gflops"]:
        lines.append(f"| matmul {size}×{size} float32, GFLOP/s | {off['matmul_gflops'][size]:.1f} | "
                     f"{on['matmul_gflops'][size]:.1f} | {summary['speedup']['matmul'][size]:.1f}× |")
    shape = summary["attention_shape"]
    lines.append(f"| mx.fast SDPA B={shape['batch']} H={shape['num_heads']} L={shape['length']} "
                 f"D={shape['head_dim']}, ms | {off['sdpa_ms']:.1f} | {on['sdpa_ms']:.1f} | "
                 f"{summary['speedup']['sdpa']:.1f}× |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child()
        return 0
    if _common.blas.find_optimised_blas({}) is None:
        print("no optimised BLAS found: nothing to compare (apt-get install libopenblas0-pthread)")
        return 0
    start = time.perf_counter()
    summary = measure(args.rounds)
    summary["seconds"] = time.perf_counter() - start
    print(format_summary(summary))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
