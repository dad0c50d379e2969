"""``mhacourse doctor``: is this machine ready for the course, and is MLX fast here?

It prints the platform, Python, MLX and its default device, the BLAS that MLX
calls in this process, a quick matmul speed, and, on Linux, how fast MLX would
be on the optimised BLAS that was found (measured in a child process), with
what to do about it.
"""

import json
import os
import platform
import subprocess
import sys

import mlx.core as mx

from . import blas
from .bench import _cpu_count, _cpu_model, _device_name, matmul_gflops

__all__ = ["probe", "compare_blas", "diagnose", "advice", "configure", "run"]

APT_PACKAGE = "libopenblas0-pthread"


def probe(size=512, repeats=5):
    """Measure this process: which BLAS MLX calls and its float32 matmul speed.

    Args:
        size (int, optional): Matrix size. Default: ``512``.
        repeats (int, optional): Timed runs. Default: ``5``.

    Returns:
        dict: ``blas`` (see :class:`mhacourse.blas.BlasInfo`), ``gflops`` and ``size``.
    """
    with mx.stream(mx.cpu):
        gflops = matmul_gflops(size, mx.float32, repeats=repeats)
    return {"blas": blas.current_blas().as_dict(), "gflops": gflops, "size": size}


def probe_in_subprocess(environ, size=512, repeats=5, timeout=120):
    """Run :func:`probe` in a fresh Python with ``environ``; return its result."""
    command = [sys.executable, "-m", "mhacourse.doctor", "--probe",
               "--size", str(size), "--repeats", str(repeats)]
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the probe failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_blas(size=512, repeats=5):
    """Measure MLX's matmul in two child processes: with and without the optimised BLAS.

    Returns:
        dict or None: ``{"off": probe, "on": probe, "speedup": float}``, or None
        off Linux or when no optimised BLAS is found.
    """
    environ = dict(os.environ)
    environ.pop(blas.ENV_VAR, None)
    library = blas.find_optimised_blas(environ)
    if library is None:
        return None
    off = probe_in_subprocess(blas.preload_env({**environ, blas.ENV_VAR: "off"}), size, repeats)
    on = probe_in_subprocess(blas.preload_env(environ), size, repeats)
    return {"off": off, "on": on, "speedup": on["gflops"] / off["gflops"]}


def diagnose(size=512, repeats=5, compare=True):
    """Collect everything the doctor reports.

    Args:
        size (int, optional): Matmul size. Default: ``512``.
        repeats (int, optional): Timed runs. Default: ``5``.
        compare (bool, optional): Also measure with and without the optimised
            BLAS in child processes (Linux). Default: ``True``.

    Returns:
        dict: ``platform``, ``python``, ``mlx``, ``device``, ``blas``,
        ``gflops``, ``setting``, ``found`` (the optimised BLAS found or None),
        ``comparison`` and ``advice`` (list of str).
    """
    here = probe(size, repeats)
    found = blas.candidates()
    report = {
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "os": _os_name(),
        "cpu": f"{_cpu_model()}, {_cpu_count()} cores",
        "python": f"{platform.python_version()} ({sys.executable})",
        "mlx": mx.__version__,
        "device": _device_name(),
        "blas": here["blas"],
        "gflops": here["gflops"],
        "size": size,
        "setting": blas.setting(),
        "found": found[0] if found else None,
        "comparison": compare_blas(size, repeats) if compare and sys.platform.startswith("linux") else None,
    }
    report["advice"] = advice(report)
    return report


def advice(report):
    """Say what to do, given a :func:`diagnose` report (list of sentences)."""
    lines = []
    info = report["blas"]
    if sys.platform == "darwin":
        return ["macOS: MLX runs on Apple's Accelerate (and on the GPU through Metal). Nothing to do."]
    if report["device"] == "gpu":
        lines.append("MLX's default device is the GPU: attention runs there, the BLAS only "
                     "matters for work on the CPU stream.")
    if info["optimised"]:
        lines.append(f"MLX runs on {info['name']}. Nothing to do "
                     f"(MHACOURSE_BLAS=off switches the course back to MLX's own BLAS).")
        return lines
    lines.append("MLX runs on the slow reference BLAS that the mlx-cpu wheel ships: "
                 "matrix products are 10-30x slower than they could be.")
    if report["setting"] == "off":
        lines.append("MHACOURSE_BLAS=off is set, so the course does not preload an optimised BLAS; "
                     "unset it to let it.")
    elif report["found"]:
        lines.append(f"An optimised BLAS is installed: {report['found']}. `make lab`, `make test`, "
                     "`make bench` and the course's Jupyter kernel ('mhacourse (MLX)') preload it "
                     "for you. For your own shell or scripts:")
        lines.append(f"    export LD_PRELOAD={report['found']}")
    else:
        lines.append(f"Install one: `sudo apt-get install {APT_PACKAGE}` (Debian/Ubuntu, a 7 MB download) "
                     "or `pip install 'mhacourse[fastblas]'` (Intel MKL, 221 MB, x86_64); the "
                     "course picks it up by itself.")
    return lines


def _os_name():
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def format_report(report):
    """Format a :func:`diagnose` report as text."""
    info = report["blas"]
    speed = "optimised" if info["optimised"] else "SLOW"
    lines = [
        f"platform   {report['platform']} ({report['os']})",
        f"cpu        {report['cpu']}",
        f"python     {report['python']}",
        f"mlx        {report['mlx']}, default device {report['device']}",
        f"blas       {info['name']} [{speed}]  {info['path'] or ''}".rstrip(),
        f"matmul     {report['gflops']:.1f} GFLOP/s (float32 {report['size']}x{report['size']}, this process)",
        f"setting    MHACOURSE_BLAS={os.environ.get(blas.ENV_VAR, '')!s} ({report['setting']})",
    ]
    comparison = report["comparison"]
    if comparison:
        lines.append(
            f"compared   {comparison['off']['blas']['name']} {comparison['off']['gflops']:.1f} GFLOP/s"
            f" -> {comparison['on']['blas']['name']} {comparison['on']['gflops']:.1f} GFLOP/s"
            f" ({comparison['speedup']:.1f}x, fresh processes)")
    lines.append("")
    lines += report["advice"]
    return "\n".join(lines)


def configure(parser):
    """Add ``mhacourse doctor``'s arguments to ``parser``."""
    parser.add_argument("--size", type=int, default=512, help="matmul size (default 512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip measuring with and without the optimised BLAS")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON ('-' for stdout)")
    parser.add_argument("--probe", action="store_true", help="internal: print this process's probe as JSON")
    return parser


def run(args):
    """Run ``mhacourse doctor``."""
    if args.size < 1 or args.repeats < 1:
        raise ValueError(f"--size and --repeats must be positive, got {args.size} and {args.repeats}.")
    if args.probe:
        print(json.dumps(probe(args.size, args.repeats)))
        return 0
    report = diagnose(args.size, args.repeats, compare=not args.no_compare)
    if args.json == "-":
        print(json.dumps(report, indent=1))
        return 0
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


def main(argv=None):
    import argparse

    parser = configure(argparse.ArgumentParser(prog="mhacourse doctor", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
