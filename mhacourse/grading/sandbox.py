"""One sandbox per submission: bubblewrap, resource limits, a private folder, nothing left behind.

The harness (:mod:`.harness`) runs inside ``bwrap`` with:

* its own PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``):
  no network, and it sees only its own processes, so it cannot signal the
  grader, the other sandboxes or the other workers (``os.kill(os.getppid(),
  9)`` reaches the namespace's init, which ignores it);
* uid/gid 65534 (nobody), a new session (``--new-session``: no terminal),
  ``--die-with-parent``;
* a file system made of read-only binds of what Python needs (``/usr``,
  ``/etc``, the interpreter, its virtual environment and the course package),
  a private ``/tmp`` and one private writable folder holding a copy of the
  notebook's cells and the job; no other submission, no shared ``HOME``, no
  IPython history;
* rlimits on memory, CPU time, processes and file size.

When the harness ends (or the grader kills it), bwrap's init exits and the
kernel kills every process left in the namespace, ``setsid`` daemons included.

Without bwrap the same harness runs as a plain child process in its own
session, only with an explicit ``--no-sandbox`` (rlimits still apply; a
process that detaches itself may survive).
"""

import json
import os
import resource
import select
import shutil
import signal
import site
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["Limits", "HarnessRun", "bwrap_available", "run_harness", "sandbox_overhead", "NO_BWRAP"]

INSIDE = "/tmp/work"  # the private folder's path inside the sandbox
NO_BWRAP = ("bubblewrap (bwrap) is not available here (not installed, or user namespaces are off), "
            "so submissions cannot be sandboxed. Install it (apt-get install bubblewrap) or, to run "
            "them unsandboxed with your own rights, pass --no-sandbox.")
_MAX_LINE = 1 << 20


@dataclass
class Limits:
    """Resource limits of one sandbox.

    Attributes:
        memory (int): Bytes of address space (RLIMIT_AS).
        cpu (int): Seconds of CPU time for the whole run (RLIMIT_CPU).
        processes (int): Processes and threads of the sandbox user (RLIMIT_NPROC).
        file_size (int): Largest file it may write, in bytes (RLIMIT_FSIZE).
    """

    memory: int = 16 * 2**30
    cpu: int = 600
    processes: int = 4096
    file_size: int = 256 * 2**20


@dataclass
class HarnessRun:
    """What one run of the harness reported.

    Attributes:
        events (list[dict]): The JSON lines it sent.
        finished (bool): It reached the end ("done").
        current (tuple or None): ``(kind, where)`` it was working on when it
            stopped early (``kind`` is ``"cell"`` or ``"exercise"``).
        how (str): ``"done"``, ``"died"`` (the process ended) or ``"hung"``
            (killed at a deadline).
        timing (dict): Seconds: ``start`` (to "ready"), ``cells``, ``checks``.
    """

    events: list = field(default_factory=list)
    finished: bool = False
    current: tuple = None
    how: str = "died"
    timing: dict = field(default_factory=dict)


def _bwrap_env():
    """The environment every ``bwrap`` call starts with: PATH only (the sandbox's own is given by
    ``--setenv``). Under the console script, LD_PRELOAD holds a threaded BLAS, and bwrap then hangs
    making its namespaces."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@lru_cache(maxsize=None)
def bwrap_available():
    """Whether ``bwrap`` exists and can make the namespaces (tried once)."""
    path = shutil.which("bwrap")
    if path is None:
        return False
    try:
        done = subprocess.run(_bwrap_args(Path("/tmp")) + ["/bin/true"], capture_output=True, timeout=30,
                              env=_bwrap_env())
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@lru_cache(maxsize=None)
def sandbox_overhead():
    """Seconds bwrap adds to starting a process (median of 5 starts of ``true``)."""
    if not bwrap_available():
        return 0.0
    times = []
    for command in (_bwrap_args(Path("/tmp")) + ["/bin/true"], ["/bin/true"]):
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, env=_bwrap_env())
            runs.append(time.perf_counter() - start)
        times.append(sorted(runs)[2])
    return max(0.0, times[0] - times[1])


def _read_only_dirs(package_dir):
    dirs = {"/usr", "/etc", sys.prefix, sys.base_prefix, str(Path(package_dir).resolve())}
    dirs |= {p for p in site.getsitepackages() if os.path.isdir(p)}
    dirs.add(os.path.dirname(os.path.realpath(sys.executable)))
    dirs = sorted(d for d in dirs if os.path.isdir(d))
    return [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]


def _bwrap_args(folder, package_dir=None):
    package_dir = package_dir or Path(__file__).resolve().parents[1]
    args = ["bwrap", "--tmpfs", "/"]
    for name in ("bin", "lib", "lib64", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    # /tmp first: a course installed under /tmp (a fresh clone in CI) is bound on top of it.
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for directory in _read_only_dirs(package_dir):
        args += ["--ro-bind", directory, directory]
    args += ["--bind", str(folder), INSIDE, "--chdir", INSIDE, "--unshare-all", "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        args += ["--unshare-user"]
    args += ["--uid", "65534", "--gid", "65534", "--clearenv"]
    return args


def _limit(limits):
    def apply():
        os.setsid()
        for which, value in ((resource.RLIMIT_AS, limits.memory), (resource.RLIMIT_CPU, limits.cpu),
                             (resource.RLIMIT_NPROC, limits.processes),
                             (resource.RLIMIT_FSIZE, limits.file_size), (resource.RLIMIT_CORE, 0)):
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                pass
    return apply


def _environment(home, package_dir):
    env = {"HOME": home, "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.mpl",
           "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(Path(package_dir).resolve().parent), "PYTHONHASHSEED": "0"}
    for key, value in os.environ.items():
        if key.startswith(("OMP_", "OPENBLAS_", "MKL_", "MLX_", "VECLIB_")):
            env[key] = value
    # The BLAS the grader runs on (mhacourse/blas.py preloads one): answers must compute on the
    # same one as the references they are compared with, or ill-conditioned cases differ.
    if os.environ.get("LD_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["LD_PRELOAD"]
    return env


def run_harness(folder, *, sandboxed, package_dir, deadline, limits=None):
    """Run the harness on ``folder`` (holding ``job.pkl``) and collect its report.

    Args:
        folder (Path): The private folder (made writable for the sandbox user).
        sandboxed (bool): Use bwrap; else a plain child process.
        package_dir (Path): The ``mhacourse`` package to import inside.
        deadline (callable): ``(kind or None) -> seconds`` allowed for the item
            just started (``"cell"``, ``"exercise"``), ``None`` between items.
        limits (Limits, optional): Resource limits.

    Returns:
        HarnessRun: the events, and where it stopped if it did not finish.
    """
    limits = limits or Limits()
    folder = Path(folder)
    home = INSIDE if sandboxed else str(folder)
    command = [sys.executable, "-X", "frozen_modules=off", "-m", "mhacourse.grading.harness", home]
    if sandboxed:
        command = _bwrap_args(folder, package_dir) + [
            arg for key, value in _environment(home, package_dir).items() for arg in ("--setenv", key, value)
        ] + command
        env = _bwrap_env()
    else:
        env = _environment(home, package_dir)
    run = HarnessRun()
    started = time.perf_counter()
    marks = {}
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, cwd=str(folder), env=env,
                               preexec_fn=_limit(limits), close_fds=True)
    buffer = b""
    current, until = None, time.monotonic() + deadline("start")
    try:
        while True:
            wait = until - time.monotonic()
            if wait <= 0:
                run.how = "hung"
                break
            ready, _, _ = select.select([process.stdout], [], [], wait)
            if not ready:
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                run.how = "died"
                break
            buffer += chunk
            if len(buffer) > _MAX_LINE and b"\n" not in buffer:
                run.how = "hung"
                break
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = _parse(line)
                if event is None:
                    continue
                run.events.append(event)
                kind = event.get("event")
                if kind == "ready":
                    marks.setdefault("ready", time.perf_counter())
                    current, until = None, time.monotonic() + deadline(None)
                elif kind == "start" and event.get("kind") in ("cell", "exercise"):
                    current = (event["kind"], event.get("where"))
                    until = time.monotonic() + deadline(event["kind"])
                elif kind == "end":
                    current, until = None, time.monotonic() + deadline(None)
                elif kind == "cells-done":
                    marks.setdefault("cells", time.perf_counter())
                elif kind == "done":
                    run.finished, run.how = True, "done"
            if run.finished:
                break
    finally:
        _kill(process)
    end = time.perf_counter()
    ready = marks.get("ready", end)
    cells = marks.get("cells", end)
    run.current = None if run.finished else current
    run.timing = {"start": round(ready - started, 4), "cells": round(max(0.0, cells - ready), 4),
                  "checks": round(max(0.0, end - cells), 4)}
    return run


def _parse(line):
    try:
        event = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _kill(process):
    """End the harness and everything in its session (the sandbox's namespace dies with it)."""
    for target in (lambda: os.killpg(process.pid, signal.SIGKILL), lambda: process.kill()):
        try:
            target()
        except (ProcessLookupError, PermissionError, OSError):
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    if process.stdout is not None:
        process.stdout.close()
