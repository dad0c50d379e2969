"""``mhacourse doctor``: can this machine run the course, and is MLX fast here?

First a list of checks, each with the one command that fixes it when it fails
(:func:`checks`): Python, the platform (Windows has no MLX wheels: use WSL), the
MLX wheel, the BLAS behind MLX and its speed, the course's Jupyter kernel,
bubblewrap and user namespaces (the grader's sandbox), Chromium (the browser
tests) and a GPU backend. The command exits with status 1 when the course cannot
run here (a check with status ``fail``), 0 otherwise.

Then, when MLX runs, the platform, MLX and its default device, the BLAS that MLX
calls in this process, a quick matmul speed, and, on Linux, how fast MLX would
be on the optimised BLAS that was found (measured in a child process), with
what to do about it.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass

from . import blas

__all__ = ["Check", "checks", "format_checks", "probe", "compare_blas", "diagnose", "advice", "configure", "run"]

APT_PACKAGE = blas.APT_PACKAGE
MIN_PYTHON = (3, 10)


# --- checks: each says what is wrong and the one command that fixes it ---

@dataclass
class Check:
    """One thing the course needs (or would like) on this machine.

    Attributes:
        name (str): short name (``python``, ``platform``, ``mlx``, ``blas``, ``kernel``,
            ``sandbox``, ``chromium``, ``gpu``).
        status (str): ``"ok"``, ``"warn"`` (the course runs, slower or without a part),
            ``"fail"`` (the course cannot run) or ``"info"``.
        detail (str): what was found.
        fix (str or None): the one command that fixes it.
        needed_for (str): what it is needed for.
    """

    name: str
    status: str
    detail: str
    fix: object = None
    needed_for: str = "the course"

    def as_dict(self):
        return asdict(self)


# Seams: what the checks read from the machine (tests replace them to simulate a missing piece).

def _python_version():
    return tuple(sys.version_info[:3])


def _platform():
    return sys.platform, platform.machine().lower()


def _which(name):
    return shutil.which(name)


def _import_mlx():
    """``(mlx.core module, None)`` or ``(None, the error text)``."""
    try:
        import mlx.core as mx
    except Exception as error:  # ImportError, or OSError from a broken libmlx
        return None, f"{type(error).__name__}: {error}"
    return mx, None


def _read_sysctl(name):
    try:
        with open(f"/proc/sys/{name.replace('.', '/')}") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _bwrap_runs(bwrap):
    """Whether bwrap can make the sandbox's namespaces here (as the grader starts it), and its error."""
    command = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
               "--unshare-all", "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        command.append("--unshare-user")
    command += ["--uid", "65534", "--gid", "65534", "/bin/true"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    except (OSError, subprocess.SubprocessError) as error:
        return False, str(error)
    return done.returncode == 0, done.stderr.strip()[-300:]


def _kernel_spec(name="mhacourse"):
    """The registered kernelspec ``name`` as ``(dir, spec dict)``, or ``(None, None)``."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec(name)
    except Exception:  # jupyter_client missing, NoSuchKernel, or an unreadable kernel.json
        return None, None
    return spec.resource_dir, {"argv": spec.argv, "display_name": spec.display_name}


def _nvidia_gpu():
    """The name of an NVIDIA GPU that ``nvidia-smi`` sees, or None."""
    smi = _which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def _pip(spec):
    return f"{sys.executable} -m pip install '{spec}'"


def _check_python():
    version = _python_version()
    text = ".".join(map(str, version))
    if version >= MIN_PYTHON:
        return Check("python", "ok", f"{text} ({sys.executable})")
    system, _ = _platform()
    fix = ("brew install python@3.12" if system == "darwin" else
           "winget install Python.Python.3.12" if system.startswith("win") else
           "sudo apt-get install python3 python3-venv")
    return Check("python", "fail", f"{text}: the course needs Python {'.'.join(map(str, MIN_PYTHON))} or newer", fix)


def _check_platform():
    system, machine = _platform()
    if system.startswith(("win", "cygwin", "msys")):
        return Check("platform", "fail", "Windows: MLX has no Windows wheels; run the course inside WSL (Ubuntu)",
                     "wsl --install -d Ubuntu")
    if system == "darwin" and machine not in ("arm64", "aarch64"):
        return Check("platform", "fail", f"macOS on {machine}: MLX's wheels need Apple silicon (arm64); "
                     "use a Linux machine or an Apple silicon Mac", None)
    if system == "darwin":
        return Check("platform", "ok", f"macOS on {machine} (Metal, Accelerate)")
    if system.startswith("linux"):
        return Check("platform", "ok", f"Linux on {machine}")
    return Check("platform", "warn", f"{system} on {machine}: MLX publishes wheels for Linux and macOS only",
                 None)


def _check_mlx(mx, error):
    system, _ = _platform()
    spec = "mlx[cpu]" if system.startswith("linux") else "mlx"
    if mx is not None:
        return Check("mlx", "ok", f"MLX {mx.__version__}, default device {mx.default_device()}")
    if "libmlx" in (error or ""):
        detail = f"the mlx wheel is there but not its library ({error}); on Linux it comes from an extra"
    else:
        detail = f"MLX does not import ({error})"
    return Check("mlx", "fail", detail, _pip(spec))


def _check_blas(mx, size=256):
    system, _ = _platform()
    if not system.startswith("linux"):
        return Check("blas", "ok", "Apple's Accelerate" if system == "darwin" else "not checked", None,
                     "fast matrix products")
    info = blas.current_blas()
    gflops = _matmul_gflops(mx, size)
    speed = f"{gflops:.0f} GFLOP/s (float32 {size}x{size})" if gflops is not None else "speed not measured"
    if info.optimised:
        return Check("blas", "ok", f"{info.name}, {speed}", None, "fast matrix products")
    found = blas.candidates()
    if blas.setting() == "off":
        return Check("blas", "warn", f"the reference BLAS, {speed}: {blas.ENV_VAR}=off is set",
                     f"unset {blas.ENV_VAR}", "fast matrix products")
    if found:
        return Check("blas", "warn", f"the reference BLAS in this process, {speed}; {found[0]} is installed but "
                     "not preloaded (the course's kernel and commands preload it)",
                     f"export LD_PRELOAD={found[0]}", "fast matrix products")
    return Check("blas", "warn", f"the reference BLAS, {speed}: matrix products are 10-30x slower than they could be",
                 f"sudo apt-get install {APT_PACKAGE}", "fast matrix products")


def _matmul_gflops(mx, size):
    if mx is None:
        return None
    from .bench import matmul_gflops

    with mx.stream(mx.cpu):
        return matmul_gflops(size, mx.float32, repeats=2)


def _check_kernel():
    where, spec = _kernel_spec()
    if spec is None:
        return Check("kernel", "warn", "the course's Jupyter kernel 'mhacourse (MLX)' is not registered: notebooks "
                     "opened in a plain Python kernel run MLX on the slow reference BLAS",
                     "mhacourse start", "the fast BLAS in notebooks")
    system, _ = _platform()
    if system.startswith("linux") and not any(os.path.basename(arg) == "blas.py" for arg in spec["argv"][1:3]):
        return Check("kernel", "warn", f"'{spec['display_name']}' in {where} does not start on the optimised BLAS",
                     "mhacourse start", "the fast BLAS in notebooks")
    return Check("kernel", "ok", f"'{spec['display_name']}' in {where}", None, "the fast BLAS in notebooks")


def _check_sandbox():
    system, _ = _platform()
    if not system.startswith("linux"):
        return Check("sandbox", "info", "grading a class (mhacourse grade) runs on Linux only; learners' "
                     "check() works everywhere", None, "grading (mhacourse grade)")
    bwrap = _which("bwrap")
    if bwrap is None:
        return Check("sandbox", "warn", "bubblewrap (bwrap) is missing: mhacourse grade cannot sandbox submissions",
                     "sudo apt-get install bubblewrap", "grading (mhacourse grade)")
    works, error = _bwrap_runs(bwrap)
    if works:
        return Check("sandbox", "ok", f"{bwrap} makes user, PID, network and mount namespaces", None,
                     "grading (mhacourse grade)")
    if _read_sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        fix = "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
    elif _read_sysctl("kernel.unprivileged_userns_clone") == "0":
        fix = "sudo sysctl -w kernel.unprivileged_userns_clone=1"
    elif _read_sysctl("user.max_user_namespaces") == "0":
        fix = "sudo sysctl -w user.max_user_namespaces=15000"
    else:
        fix = None  # a container that forbids namespaces: run the grader on the host or a privileged pod
    return Check("sandbox", "warn",
                 f"bwrap cannot make its namespaces here (user namespaces off?): {error or 'failed'}",
                 fix, "grading (mhacourse grade)")


def _check_chromium():
    found = next((path for path in (_which("chromium"), _which("chromium-browser")) if path), None)
    if found:
        return Check("chromium", "ok", found, None, "the browser tests (developers)")
    system, _ = _platform()
    fix = "sudo apt-get install chromium" if system.startswith("linux") else None
    return Check("chromium", "info", "no Chromium: tests/test_browser.py is skipped (learners do not need it)",
                 fix, "the browser tests (developers)")


def _check_gpu(mx):
    system, _ = _platform()
    if mx is None:
        return Check("gpu", "info", "not checked (MLX does not import)", None, "the fused kernel's GPU speed")
    if system == "darwin":
        metal = getattr(mx, "metal", None)
        if metal is not None and metal.is_available():
            return Check("gpu", "ok", "Metal", None, "the fused kernel's GPU speed")
        return Check("gpu", "info", "no Metal device: MLX runs on the CPU", None, "the fused kernel's GPU speed")
    cuda = getattr(mx, "cuda", None)
    if cuda is not None and cuda.is_available():
        return Check("gpu", "ok", "CUDA", None, "the fused kernel's GPU speed")
    nvidia = _nvidia_gpu()
    if nvidia:
        return Check("gpu", "warn", f"{nvidia}, but this MLX has no CUDA backend (the mlx[cpu] wheel); use a "
                     "separate environment for it (make gpu-check builds .venv-cuda)",
                     _pip("mlx[cuda13]"), "the fused kernel's GPU speed")
    return Check("gpu", "info", "no GPU backend: everything runs on the CPU (enough for the course; lesson 05's "
                 "fused-kernel speed-up is a GPU story)", None, "the fused kernel's GPU speed")


def checks(speed=True):
    """Check what the course needs on this machine.

    Args:
        speed (bool, optional): Time a small matmul for the BLAS check. Default: ``True``.

    Returns:
        list(Check): python, platform, mlx, blas, kernel, sandbox, chromium, gpu (the
        BLAS and GPU checks only when MLX imports).
    """
    found = [_check_python(), _check_platform()]
    mx, error = _import_mlx()
    found.append(_check_mlx(mx, error))
    if mx is not None:
        found.append(_check_blas(mx if speed else None))
    found += [_check_kernel(), _check_sandbox(), _check_chromium(), _check_gpu(mx)]
    return found


def can_run(found):
    """Whether the course can run, given :func:`checks` (no check failed)."""
    return not any(check.status == "fail" for check in found)


def format_checks(found):
    """The checks as text: one line each, and ``fix:`` with the command under each that has one."""
    lines = []
    for check in found:
        mark = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": "--"}[check.status]
        lines.append(f"{mark:<5} {check.name:<9} {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"{'':<15} fix ({check.needed_for}): {check.fix}")
    verdict = ("The course can run here." if can_run(found) else
               "The course cannot run here until the FAIL lines are fixed.")
    return "\n".join(lines + [verdict])


def probe(size=512, repeats=5):
    """Measure this process: which BLAS MLX calls and its float32 matmul speed.

    Args:
        size (int, optional): Matrix size. Default: ``512``.
        repeats (int, optional): Timed runs. Default: ``5``.

    Returns:
        dict: ``blas`` (see :class:`mhacourse.blas.BlasInfo`), ``gflops`` and ``size``.
    """
    import mlx.core as mx

    from .bench import matmul_gflops

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
    import mlx.core as mx

    from .bench import _cpu_count, _cpu_model, _device_name

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
    """Run ``mhacourse doctor``: exit status 1 when the course cannot run here."""
    if args.size < 1 or args.repeats < 1:
        raise ValueError(f"--size and --repeats must be positive, got {args.size} and {args.repeats}.")
    if args.probe:
        print(json.dumps(probe(args.size, args.repeats)))
        return 0
    found = checks()
    status = 0 if can_run(found) else 1
    report = {"checks": [check.as_dict() for check in found], "can_run": status == 0}
    if status == 0:
        report.update(diagnose(args.size, args.repeats, compare=not args.no_compare))
    if args.json == "-":
        print(json.dumps(report, indent=1))
        return status
    print(format_checks(found))
    if status == 0:
        print()
        print(format_report(report))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return status


def main(argv=None):
    import argparse

    parser = configure(argparse.ArgumentParser(prog="mhacourse doctor", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
