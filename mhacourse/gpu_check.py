"""``make gpu-check``: the parity tests and the layer benchmark on this machine's backend, as one JSON file.

It runs everywhere and says where it ran:

1. ``tests/test_sdpa.py`` and ``tests/test_parity.py`` (explicit attention against
   ``mx.fast.scaled_dot_product_attention``, the course's layer against
   ``mlx.nn.MultiHeadAttention``) on the default device, with the per-backend
   tolerances of :func:`tolerances` (on CUDA, float32 matmuls run in TF32). The
   tests live in the checkout, so this step runs only from a checkout (an
   editable install); from an installed wheel the JSON says it was skipped;
2. ``mhacourse bench`` at B=4, H=16, D_h=128 in bfloat16: explicit against fused
   attention, and both layers eager and compiled. On a GPU the lengths go up to
   8192; on a CPU (no GPU at hand, or a dry run) they stay tiny, because MLX's
   CPU backend multiplies bfloat16 matrices without a BLAS (under 1 GFLOP/s on
   a laptop-class core) and the point there is only that the check works;
3. one JSON file with the backend, MLX's version, the device, the test results
   and the benchmark rows and checks.

Usage: ``python -m mhacourse.gpu_check [--out artifacts/gpu-check.json] [--lengths 1024,2048]``.
``make gpu-check`` installs MLX's CUDA wheels first when ``nvidia-smi`` sees a GPU.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import mlx.core as mx

TEST_FILES = ("tests/test_sdpa.py", "tests/test_parity.py")
SHAPE = {"batch": 4, "num_heads": 16, "head_dim": 128}
GPU_LENGTHS = (1024, 2048, 4096, 8192)
CPU_LENGTHS = (8, 16)


def backend():
    """``"cuda"``, ``"metal"`` or ``"cpu"``: where MLX runs by default here."""
    if mx.default_device() != mx.gpu:
        return "cpu"
    return "cuda" if mx.cuda.is_available() else "metal"


def device_info():
    """What MLX reports about the default device, plus ``nvidia-smi``'s view of the GPUs."""
    info = {"default_device": str(mx.default_device())}
    try:
        info.update({key: value if isinstance(value, (int, float, str)) else str(value)
                     for key, value in mx.device_info().items()})
    except (AttributeError, RuntimeError) as error:
        info["device_info_error"] = str(error)
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                 "--format=csv,noheader"]
        result = subprocess.run(query, capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = result.stdout.strip().splitlines() or result.stderr.strip()
    return info


def tolerances(where=None, environ=None):
    """The absolute tolerances, per dtype, that the parity tests allow on a backend.

    MLX's own ``test_fast_sdpa.py`` uses 1e-5 (float32), 3e-4 (float16) and
    5e-3 (bfloat16) on the CPU and Metal. MLX's CUDA backend multiplies float32
    matrices in TF32 (a 10-bit mantissa, like float16's) unless
    ``MLX_ENABLE_TF32=0``, and cuDNN's fused kernel adds up in another order: on
    one H100 (MLX 0.32.4) |fused - explicit| reached 0.002 in float16 and 0.016
    in bfloat16.

    Args:
        where (str, optional): ``"cuda"``, ``"metal"`` or ``"cpu"``. Default: :func:`backend`.
        environ (dict, optional): read for ``MLX_ENABLE_TF32``. Default: ``os.environ``.

    Returns:
        dict: ``backend``, ``tf32`` (bool) and ``atol`` (``{mx.Dtype: float}``).
    """
    where = backend() if where is None else where
    environ = os.environ if environ is None else environ
    tf32 = where == "cuda" and environ.get("MLX_ENABLE_TF32", "1") != "0"
    atol = {mx.float32: 1e-5, mx.float16: 3e-4, mx.bfloat16: 5e-3}
    if where == "cuda":
        atol = {mx.float32: 2e-3 if tf32 else 1e-4, mx.float16: 2e-3, mx.bfloat16: 1.6e-2}
    return {"backend": where, "tf32": tf32, "atol": atol}


def run_tests(files=TEST_FILES, timeout=600):
    """Run the parity tests in a child pytest on the default backend; summarise its JUnit report.

    The tests are the checkout's (``tests/``): with no checkout (an installed
    wheel) the summary says so and counts nothing.
    """
    from mhacourse.course_files import checkout_root

    root = checkout_root()
    if root is None:
        return {"files": list(files), "skipped": "no checkout: the parity tests live in a clone's tests/",
                "passed": 0, "failed": 0, "tolerances": _tolerances()}
    missing = [name for name in files if not (root / name).exists()]
    if missing:
        return {"files": list(files), "error": f"not found under {root}: {missing}", "passed": 0, "failed": 0}
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={report}", *files]
        start = time.perf_counter()
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout)
        summary = {"files": list(files), "command": " ".join(command[1:]), "exit_code": result.returncode,
                   "seconds": round(time.perf_counter() - start, 1)}
        summary.update(_junit_summary(report) if report.exists() else
                       {"passed": 0, "failed": 0, "error": result.stdout[-2000:] + result.stderr[-2000:]})
    summary["tolerances"] = _tolerances()
    return summary


def _junit_summary(path):
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if problem is None:
            counts["passed"] += 1
            continue
        kind = {"failure": "failed", "error": "errors", "skipped": "skipped"}[problem.tag]
        counts[kind] += 1
        if kind != "skipped" and len(failures) < 20:
            failures.append({"test": f"{case.get('classname')}::{case.get('name')}",
                             "message": (problem.get("message") or "")[:500]})
    return {**counts, "failures": failures}


def _tolerances():
    """:func:`tolerances` on this backend, as JSON-ready data."""
    found = tolerances()
    return {"backend": found["backend"], "tf32": found["tf32"],
            **{str(dtype).replace("mlx.core.", ""): atol for dtype, atol in found["atol"].items()}}


def run_bench(lengths, repeats, warmup, causal_modes):
    """``mhacourse bench`` at B=4, H=16, D_h=128 in bfloat16, every implementation."""
    from mhacourse import bench

    rows, start = [], time.perf_counter()
    for causal in causal_modes:
        rows += bench.benchmark_attention(lengths, dtype=mx.bfloat16, causal=causal, repeats=repeats,
                                          warmup=warmup, **SHAPE)
    checks = []
    for causal in causal_modes:
        for check in bench.check_ratios([row for row in rows if row["causal"] == causal]):
            checks.append({**check, "causal": causal})
    print(bench.format_table(rows))
    print(bench.format_ratios(checks))
    return {"shape": {**SHAPE, "dtype": "bfloat16"}, "lengths": list(lengths), "repeats": repeats,
            "rows": rows, "checks": checks, "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mhacourse.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="artifacts/gpu-check.json",
                        help="the JSON file to write (default artifacts/gpu-check.json)")
    parser.add_argument("--lengths", help=f"comma-separated sequence lengths (default {GPU_LENGTHS} on a GPU, "
                                          f"{CPU_LENGTHS} on a CPU)")
    parser.add_argument("--repeats", type=int, help="timed runs per point (default 10 on a GPU, 2 on a CPU)")
    parser.add_argument("--skip-tests", action="store_true", help="only the benchmark")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    where = backend()
    on_gpu = where != "cpu"
    lengths = tuple(int(n) for n in args.lengths.split(",")) if args.lengths else (
        GPU_LENGTHS if on_gpu else CPU_LENGTHS)
    repeats = args.repeats or (10 if on_gpu else 2)
    print(f"gpu-check: backend {where}, MLX {mx.__version__}, lengths {lengths}")
    if on_gpu:
        note = f"ran on the {where} backend"
    else:
        note = (f"no GPU backend here: a CPU dry run. The tests ran on the CPU; the benchmark used "
                f"L = {list(lengths)} instead of up to 8192 (MLX's CPU bfloat16 matmul is slow), so its "
                f"times say nothing about a GPU.")

    document = {
        "backend": where,
        "ran_on_gpu": on_gpu,
        "note": note,
        "mlx": mx.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_info(),
        "environment": {name: os.environ[name] for name in ("MLX_ENABLE_TF32", "CUDA_VISIBLE_DEVICES")
                        if name in os.environ},
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if not args.skip_tests:
        document["tests"] = run_tests()
        tests = document["tests"]
        if "skipped" in tests:
            print(f"tests: skipped ({tests['skipped']})")
        else:
            print(f"tests: {tests['passed']} passed, {tests['failed']} failed "
                  f"({tests.get('seconds', '?')} s) on {where}")
    document["bench"] = run_bench(lengths, repeats, warmup=2 if on_gpu else 1,
                                  causal_modes=(False, True) if on_gpu else (False,))
    document["seconds"] = round(time.perf_counter() - start, 1)
    tests_ok = args.skip_tests or (document["tests"]["failed"] == 0 and not document["tests"].get("errors")
                                   and "error" not in document["tests"])
    document["tests_passed"] = None if "skipped" in document.get("tests", {}) else bool(tests_ok)
    document["ratios_hold"] = all(check["holds"] is not False for check in document["bench"]["checks"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=1, default=str))
    print(f"wrote {args.out} ({document['seconds']} s): backend={where}, tests passed: {tests_ok}, "
          f"ratio checks hold: {document['ratios_hold']}")
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
