"""Time explicit against fused attention, and the course's layer against MLX's.

Six implementations are measured at each sequence length ``L``:

- ``"explicit"``: the course's stage 1, ``mhacourse.scaled_dot_product_attention``,
  which builds the ``(B, H, L, L)`` weights;
- ``"fused"``: ``mx.fast.scaled_dot_product_attention``;
- ``"mhacourse"``: the course's final layer, ``mhacourse.MultiHeadAttention``;
- ``"mlx.nn"``: ``mlx.nn.MultiHeadAttention`` with the same weights;
- ``"mhacourse compiled"`` and ``"mlx.nn compiled"``: the two layers under ``mx.compile``.

Each is warmed up, then all are timed in turns, ``repeats`` rounds, with
``mx.eval`` and ``mx.synchronize``; the median and the interquartile range are reported, with
the peak memory one call needs beyond its inputs, the achieved GFLOP/s and
that as a fraction of a square matmul timed in the same run on the same device.

Attention FLOPs are ``4·B·H·L²·D`` (two matmuls), halved for a causal mask;
the layers add their four projections, ``8·B·L·E²`` with ``E = H·D``.
"""

import functools
import json
import logging
import math
import platform
import sys
import time

import mlx.core as mx
import mlx.nn as nn
import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "IMPLEMENTATIONS",
    "attention_flops",
    "layer_flops",
    "time_function",
    "time_interleaved",
    "matmul_gflops",
    "benchmark_attention",
    "check_ratios",
    "format_table",
    "plot_benchmark",
    "configure",
    "run",
]

IMPLEMENTATIONS = ("explicit", "fused", "mhacourse", "mlx.nn", "mhacourse compiled", "mlx.nn compiled")
LAYER_PAIRS = (("mhacourse", "mlx.nn"), ("mhacourse compiled", "mlx.nn compiled"))
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
MB = 1e6
LAYER_TIME_TOLERANCE = 0.05  # mhacourse.MultiHeadAttention within 5% of mlx.nn's time


def attention_flops(batch, num_heads, length, head_dim, causal=False, n_keys=None):
    """Count the FLOPs of scaled dot-product attention.

    ``Q Kᵀ`` and ``weights · V`` each take ``2·B·H·Lq·Lk·D`` FLOPs; a causal
    mask lets a fused kernel skip half of them.

    Args:
        batch (int): Batch size ``B``.
        num_heads (int): Number of heads ``H``.
        length (int): Number of queries ``Lq``.
        head_dim (int): Head dimension ``D``.
        causal (bool, optional): Count half the work. Default: ``False``.
        n_keys (int, optional): Number of keys ``Lk``. Default: ``length``.

    Returns:
        int: the FLOP count.
    """
    n_keys = length if n_keys is None else n_keys
    flops = 4 * batch * num_heads * length * n_keys * head_dim
    return flops // 2 if causal else flops


def layer_flops(batch, num_heads, length, head_dim, causal=False):
    """Count the FLOPs of a multi-head attention layer with ``dims = H·D``.

    Attention (:func:`attention_flops`) plus the query, key, value and output
    projections, ``2·B·L·E²`` each.

    Returns:
        int: the FLOP count.
    """
    dims = num_heads * head_dim
    projections = 4 * 2 * batch * length * dims * dims
    return attention_flops(batch, num_heads, length, head_dim, causal) + projections


def time_function(fn, repeats=5, warmup=2):
    """Time ``fn`` (which returns arrays) on the default device.

    Args:
        fn (callable): Builds the computation; its result is evaluated.
        repeats (int, optional): Timed runs. Default: ``5``.
        warmup (int, optional): Untimed runs first. Default: ``2``.

    Returns:
        dict: ``times_ms`` (list), ``median_ms``, ``spread_ms`` (interquartile
        range) and ``peak_mb`` (the peak memory of one run beyond what was
        allocated before it).
    """
    return time_interleaved({"fn": fn}, repeats, warmup)["fn"]


def time_interleaved(fns, repeats=5, warmup=2):
    """Time several functions in turns, so that they share the machine's ups and downs.

    Each round runs every function once, in order; on a busy or throttling
    machine this keeps their ratios fair where one-after-the-other would not.

    Args:
        fns (dict(str, callable)): Functions returning arrays, by name.
        repeats (int, optional): Rounds. Default: ``5``.
        warmup (int, optional): Untimed runs of each first. Default: ``2``.

    Returns:
        dict(str, dict): per name, what :func:`time_function` returns.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    results = {name: _peak_memory(fn, warmup) for name, fn in fns.items()}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            mx.eval(fn())
            mx.synchronize()
            results[name]["times_ms"].append((time.perf_counter() - start) * 1e3)
    for result in results.values():
        result.update(_summary(result["times_ms"]))
    return results


def _peak_memory(fn, warmup):
    """Warm ``fn`` up, then measure one run's peak memory beyond what it started with."""
    for _ in range(warmup):
        mx.eval(fn())
    mx.synchronize()
    mx.clear_cache()
    before = mx.get_active_memory()
    mx.reset_peak_memory()
    mx.eval(fn())
    mx.synchronize()
    return {"times_ms": [], "peak_mb": max(mx.get_peak_memory() - before, 0) / MB}


def _summary(times):
    q25, median, q75 = np.percentile(times, [25, 50, 75])
    return {"median_ms": float(median), "spread_ms": float(q75 - q25)}


def matmul_gflops(size=512, dtype=mx.float32, repeats=5, warmup=1):
    """Measure a square matmul, the yardstick for the attention timings.

    Args:
        size (int, optional): The matrices are ``size × size``. Default: ``512``.
        dtype (Dtype, optional): Default: ``mx.float32``.
        repeats (int, optional): Default: ``5``.
        warmup (int, optional): Default: ``1``.

    Returns:
        float: GFLOP/s from the median time.
    """
    a = mx.random.normal((size, size), key=mx.random.key(1)).astype(dtype)
    b = mx.random.normal((size, size), key=mx.random.key(2)).astype(dtype)
    mx.eval(a, b)
    timing = time_function(lambda: a @ b, repeats=repeats, warmup=warmup)
    return 2 * size**3 / (timing["median_ms"] * 1e-3) / 1e9


def _dtype_name(dtype):
    return str(dtype).replace("mlx.core.", "")


def _device_name():
    device = mx.default_device()
    return "gpu" if device.type == mx.gpu else "cpu"


def _check_lengths(lengths):
    if isinstance(lengths, int):
        lengths = (lengths,)
    try:
        lengths = tuple(int(length) for length in lengths)
    except (TypeError, ValueError) as error:
        raise TypeError(f"lengths must be a sequence of ints, got {lengths!r}.") from error
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths must be positive sequence lengths, got {lengths}.")
    return lengths


def _make_layers(dims, num_heads, dtype, mask):
    """Both layers with the same weights, called eagerly and under ``mx.compile``."""
    import mhacourse

    theirs = nn.MultiHeadAttention(dims, num_heads)
    ours = mhacourse.MultiHeadAttention(dims, num_heads)
    ours.update(theirs.parameters())
    theirs.set_dtype(dtype)
    ours.set_dtype(dtype)
    mx.eval(ours.parameters(), theirs.parameters())
    calls = {}
    for name, layer in (("mhacourse", ours), ("mlx.nn", theirs)):
        calls[name] = functools.partial(_self_attention, layer, mask=mask)
        # Compiled once per shape (in the warm-up); the weights are constants of the graph.
        calls[f"{name} compiled"] = mx.compile(calls[name])
    return calls


def _self_attention(layer, x, mask):
    return layer(x, x, x, mask=mask)


def benchmark_attention(
    lengths=(64, 128, 256, 512),
    batch=1,
    num_heads=4,
    head_dim=32,
    dtype=mx.float32,
    causal=False,
    repeats=5,
    *,
    warmup=2,
    impls=IMPLEMENTATIONS,
    matmul_size=512,
    seed=0,
):
    """Time explicit and fused attention, and both layers, at each length.

    Args:
        lengths (sequence(int), optional): Sequence lengths ``L`` (queries =
            keys). Default: ``(64, 128, 256, 512)``.
        batch (int, optional): Batch size. Default: ``1``.
        num_heads (int, optional): Number of heads. Default: ``4``.
        head_dim (int, optional): Dimension per head; the layers use
            ``dims = num_heads * head_dim``. Default: ``32``.
        dtype (Dtype, optional): Default: ``mx.float32``.
        causal (bool, optional): Use the ``"causal"`` mask. Default: ``False``.
        repeats (int, optional): Timed runs per measurement. Default: ``5``.
        warmup (int, optional): Untimed runs first. Default: ``2``.
        impls (sequence(str), optional): Any of ``IMPLEMENTATIONS``.
        matmul_size (int, optional): Size of the reference matmul. Default: ``512``.
        seed (int, optional): Seed for inputs and weights. Default: ``0``.

    Returns:
        list(dict): one row per implementation and length with keys ``impl``,
        ``L``, ``median_ms``, ``spread_ms``, ``peak_mb``, ``gflops``,
        ``matmul_fraction``, ``device``, ``dtype`` (and ``flops``, ``batch``,
        ``num_heads``, ``head_dim``, ``causal``, ``repeats``, ``matmul_gflops``).
    """
    import mhacourse

    lengths = _check_lengths(lengths)
    for name, value in (("batch", batch), ("num_heads", num_heads), ("head_dim", head_dim),
                        ("repeats", repeats)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(dtype, mx.Dtype) or not mx.issubdtype(dtype, mx.floating):
        raise TypeError(f"dtype must be a floating mx.Dtype such as mx.float32, got {dtype!r}.")
    unknown = [impl for impl in impls if impl not in IMPLEMENTATIONS]
    if unknown or not impls:
        raise ValueError(f"impls must be a non-empty subset of {IMPLEMENTATIONS}, got {tuple(impls)}.")

    mx.random.seed(seed)
    dims = num_heads * head_dim
    scale = 1.0 / math.sqrt(head_dim)
    mask = "causal" if causal else None
    layers = _make_layers(dims, num_heads, dtype, mask)
    reference = matmul_gflops(matmul_size, dtype, repeats=repeats)
    device, dtype_name = _device_name(), _dtype_name(dtype)

    rows = []
    for length in lengths:
        key = mx.random.key(seed + length)
        kq, kk, kv, kx = mx.random.split(key, 4)
        shape = (batch, num_heads, length, head_dim)  # (B, H, L, D)
        q = mx.random.normal(shape, key=kq).astype(dtype)
        k = mx.random.normal(shape, key=kk).astype(dtype)
        v = mx.random.normal(shape, key=kv).astype(dtype)
        x = mx.random.normal((batch, length, dims), key=kx).astype(dtype)  # (B, L, E)
        mx.eval(q, k, v, x)
        fns = {
            "explicit": functools.partial(mhacourse.scaled_dot_product_attention, q, k, v, scale=scale, mask=mask),
            "fused": functools.partial(mx.fast.scaled_dot_product_attention, q, k, v, scale=scale, mask=mask),
        }
        fns.update({name: functools.partial(call, x) for name, call in layers.items()})
        timings = time_interleaved({impl: fns[impl] for impl in impls}, repeats, warmup)
        for impl in impls:
            timing = timings[impl]
            if impl in ("explicit", "fused"):
                flops = attention_flops(batch, num_heads, length, head_dim, causal)
            else:
                flops = layer_flops(batch, num_heads, length, head_dim, causal)
            gflops = flops / (timing["median_ms"] * 1e-3) / 1e9
            rows.append({
                "impl": impl,
                "L": length,
                "median_ms": timing["median_ms"],
                "spread_ms": timing["spread_ms"],
                "peak_mb": timing["peak_mb"],
                "gflops": gflops,
                "matmul_fraction": gflops / reference,
                "device": device,
                "dtype": dtype_name,
                "flops": flops,
                "batch": batch,
                "num_heads": num_heads,
                "head_dim": head_dim,
                "causal": bool(causal),
                "repeats": repeats,
                "matmul_gflops": reference,
            })
        del q, k, v, x
    return rows


def _growth_exponent(lengths, values):
    """Least-squares slope of log(value) against log(L): 2 for L², 1 for L."""
    points = [(math.log(length), math.log(value)) for length, value in zip(lengths, values) if value > 0]
    if len(points) < 2:
        return None
    xs, ys = zip(*points)
    return float(np.polyfit(xs, ys, 1)[0])


def check_ratios(rows):
    """Check the ratios the course promises, from benchmark rows.

    1. ``mhacourse.MultiHeadAttention`` takes at most 5% longer than
       ``mlx.nn.MultiHeadAttention`` (same kernel underneath), called eagerly
       and under ``mx.compile``: the median of the per-length time ratios.
    2. The explicit stage's peak memory grows as ``L²`` and the fused kernel's
       does not (on a GPU; the CPU has no fused kernel, so both grow as ``L²``
       there and the check reports what it sees).

    Args:
        rows (list(dict)): from :func:`benchmark_attention`.

    Returns:
        list(dict): one per check and dtype, with ``check``, ``dtype``,
        ``value``, ``target``, ``holds`` (bool, or None when the check does
        not apply on this device) and ``detail``.
    """
    results = []
    for dtype in sorted({row["dtype"] for row in rows}):
        table = {(row["impl"], row["L"]): row for row in rows if row["dtype"] == dtype}
        lengths = sorted({length for _, length in table})
        for ours_name, theirs_name in LAYER_PAIRS:
            pairs = [(table[(ours_name, n)], table[(theirs_name, n)]) for n in lengths
                     if (ours_name, n) in table and (theirs_name, n) in table]
            if not pairs:
                continue
            ratios = [ours["median_ms"] / theirs["median_ms"] for ours, theirs in pairs]
            value = float(np.median(ratios))
            results.append({
                "check": f"layer time: {ours_name} / {theirs_name}",
                "dtype": dtype,
                "value": value,
                "target": f"<= {1 + LAYER_TIME_TOLERANCE:.2f}",
                "holds": value <= 1 + LAYER_TIME_TOLERANCE,
                "detail": "per L: " + ", ".join(
                    f"{ours['L']}: {ratio:.2f}" for (ours, _), ratio in zip(pairs, ratios)),
            })
        slopes = {}
        for impl in ("explicit", "fused"):
            have = [n for n in lengths if (impl, n) in table]
            slopes[impl] = _growth_exponent(have, [table[(impl, n)]["peak_mb"] for n in have])
        if slopes["explicit"] is not None and slopes["fused"] is not None:
            device = rows[0]["device"]
            explicit_l2 = slopes["explicit"] >= 1.6
            fused_below = slopes["fused"] <= 1.4
            on_gpu = device == "gpu"
            if on_gpu:
                detail = "GPU: the fused kernel never builds the (B, H, L, L) weights"
            else:
                detail = ("CPU: MLX has no fused CPU kernel (it runs the explicit computation), "
                          "so both grow as L² here; the check applies on a GPU")
            results.append({
                "check": "peak memory growth exponent: explicit, fused",
                "dtype": dtype,
                "value": [slopes["explicit"], slopes["fused"]],
                "target": "explicit ≈ 2 (L²), fused ≤ 1.4 (on a GPU)",
                "holds": (explicit_l2 and fused_below) if on_gpu else None,
                "detail": detail,
            })
    return results


def format_table(rows):
    """Format benchmark rows as a fixed-width text table."""
    header = ("impl", "dtype", "L", "median ms", "± IQR", "peak MB", "GFLOP/s", "of matmul")
    lines = [header]
    for row in rows:
        lines.append((
            row["impl"], row["dtype"], str(row["L"]), f"{row['median_ms']:.3f}",
            f"{row['spread_ms']:.3f}", f"{row['peak_mb']:.2f}", f"{row['gflops']:.2f}",
            f"{row['matmul_fraction']:.0%}",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        cells = [cell.ljust(width) if i < 2 else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(line, widths))]
        out.append("  ".join(cells))
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def format_ratios(results):
    """Format :func:`check_ratios` results, one line each."""
    lines = []
    for result in results:
        verdict = {True: "holds", False: "FAILS", None: "n/a"}[result["holds"]]
        value = result["value"]
        shown = ", ".join(f"{v:.2f}" for v in value) if isinstance(value, list) else f"{value:.2f}"
        lines.append(f"[{verdict}] {result['check']} ({result['dtype']}): {shown}, "
                     f"target {result['target']} — {result['detail']}")
    return "\n".join(lines)


def plot_benchmark(rows):
    """Plot time and peak memory against sequence length, one line per implementation.

    Args:
        rows (list(dict)): from :func:`benchmark_attention`.

    Returns:
        matplotlib.figure.Figure: two log-log panels, time (ms) and peak memory (MB).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mhacourse.viz.static import register_png_formatter

    if not rows:
        raise ValueError("rows must hold at least one benchmark row.")
    series = {}
    for row in rows:
        label = row["impl"] if len({r["dtype"] for r in rows}) == 1 else f"{row['impl']} ({row['dtype']})"
        series.setdefault(label, []).append(row)

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    time_ax, memory_ax = fig.subplots(1, 2)
    for label, points in series.items():
        points = sorted(points, key=lambda row: row["L"])
        lengths = [row["L"] for row in points]
        time_ax.errorbar(lengths, [row["median_ms"] for row in points],
                         yerr=[row["spread_ms"] / 2 for row in points], marker="o", label=label)
        memory_ax.plot(lengths, [max(row["peak_mb"], 1e-3) for row in points], marker="o", label=label)
    for ax, ylabel in ((time_ax, "median time (ms)"), (memory_ax, "peak memory (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    time_ax.legend()
    first = rows[0]
    fig.suptitle(f"attention on {first['device']}: B={first['batch']}, H={first['num_heads']}, "
                 f"D={first['head_dim']}{', causal' if first['causal'] else ''}")
    register_png_formatter()
    return fig


def environment():
    """Describe where the benchmark ran: device, BLAS, versions, machine."""
    from mhacourse import blas

    info = blas.current_blas()
    return {
        "device": _device_name(),
        "mlx": mx.__version__,
        "blas": info.as_dict(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": _cpu_count(),
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count():
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


# ---------------------------------------------------------------- command line

PRESETS = {
    "small": {"lengths": "64,128,256,512", "batch": 1, "heads": 4, "head_dim": 32},
    "large": {"lengths": "256,512,1024,2048,4096", "batch": 1, "heads": 8, "head_dim": 64},
}


def configure(parser):
    """Add ``mhacourse bench``'s arguments to ``parser``."""
    parser.add_argument("--size", choices=sorted(PRESETS), default="small",
                        help="preset shapes: small (default, < 1 min on a laptop CPU) or large")
    parser.add_argument("--lengths", help="comma-separated sequence lengths (overrides --size)")
    parser.add_argument("--batch", type=int, help="batch size")
    parser.add_argument("--heads", type=int, help="number of heads")
    parser.add_argument("--head-dim", type=int, help="dimension per head")
    parser.add_argument("--dtypes", default="float32",
                        help="comma-separated dtypes from float32, float16, bfloat16 (default float32)")
    parser.add_argument("--causal", action="store_true", help="use the causal mask")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per point (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated subset of {','.join(IMPLEMENTATIONS)}")
    parser.add_argument("--matmul-size", type=int, default=512, help="reference matmul size (default 512)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is available")
    parser.add_argument("--json", metavar="PATH", help="write rows, checks and environment as JSON")
    parser.add_argument("--plot", metavar="PATH", help="save the plot (PNG)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a ratio check fails")
    return parser


def _split(text, name):
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"--{name} needs at least one value.")
    return items


def run(args):
    """Run ``mhacourse bench``: print the table and the checks, write JSON and PNG."""
    preset = PRESETS[args.size]
    lengths = [int(n) for n in _split(args.lengths or preset["lengths"], "lengths")]
    batch = args.batch or preset["batch"]
    heads = args.heads or preset["heads"]
    head_dim = args.head_dim or preset["head_dim"]
    impls = _split(args.impls, "impls")
    dtypes = []
    for name in _split(args.dtypes, "dtypes"):
        if name not in DTYPES:
            raise ValueError(f"--dtypes: unknown dtype {name!r}; expected one of {sorted(DTYPES)}.")
        dtypes.append(DTYPES[name])
    if args.cpu:
        mx.set_default_device(mx.cpu)

    env = environment()
    print(f"device {env['device']}, MLX {env['mlx']}, BLAS {env['blas']['name']}, "
          f"{env['processor']} ({env['cpu_count']} cores)")
    print(f"B={batch} H={heads} D={head_dim} causal={args.causal} repeats={args.repeats}")
    rows = []
    start = time.perf_counter()
    for dtype in dtypes:
        rows += benchmark_attention(lengths, batch, heads, head_dim, dtype, args.causal,
                                    args.repeats, warmup=args.warmup, impls=impls,
                                    matmul_size=args.matmul_size)
    elapsed = time.perf_counter() - start
    checks = check_ratios(rows)
    references = {row["dtype"]: row["matmul_gflops"] for row in rows}
    print()
    print(format_table(rows))
    print()
    print("matmul " + ", ".join(f"{dtype}: {value:.1f} GFLOP/s" for dtype, value in references.items())
          + f" ({args.matmul_size}×{args.matmul_size})")
    if checks:
        print(format_ratios(checks))
    log.info("benchmark took %.1f s", elapsed)

    if args.json:
        document = {"environment": env, "rows": rows, "checks": checks,
                    "args": {k: v for k, v in vars(args).items() if k != "module"},
                    "seconds": elapsed, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        with open(args.json, "w") as handle:
            json.dump(document, handle, indent=1, default=str)
        log.info("wrote %s", args.json)
    if args.plot:
        plot_benchmark(rows).savefig(args.plot, dpi=100)
        log.info("wrote %s", args.plot)
    if args.strict and any(check["holds"] is False for check in checks):
        return 1
    return 0


def main(argv=None):
    import argparse

    parser = configure(argparse.ArgumentParser(prog="mhacourse bench", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
