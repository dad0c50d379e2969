"""One sandbox per submission: bubblewrap, an unprivileged uid, limits that hold for a root grader.

The harness (:mod:`.sandbox.harness`) runs inside ``bwrap`` with:

* its own PID, network, IPC and UTS namespaces: no network, and it sees only
  its own processes (it cannot signal the grader or another sandbox);
* an unprivileged host uid: when the grader runs as root, bwrap sets up the
  mounts and ``setpriv`` drops to uid/gid 65534 with no capabilities and
  ``no_new_privs`` before any course or learner code runs, so files that only
  root can read outside stay unreadable inside; as another user, a user
  namespace maps uid 65534 inside to that user;
* a file system of read-only binds (``/usr``, ``/etc``, the interpreter and its
  environment) plus the course *view* (:mod:`.view`): the course modules of
  earlier lessons and the harness, never the checks, references, hidden cases
  or solutions (the installed ``mhacourse`` package is masked by an empty
  folder where it would otherwise be visible);
* size-limited tmpfs for ``/tmp`` and for its working folder (bwrap's ``--size``);
* limits: a cgroup with a memory and a task limit where one can be made (v2,
  or v1's ``memory`` and ``pids``), else rlimits (address space, processes of
  the sandbox's uid, which hold since that uid is not root); CPU time and file
  size by rlimits;
* an absolute deadline, set when it starts, that nothing from inside can move.

Job, inputs and outputs travel on pipes: the job and, after the last cell,
each call's inputs on its standard input; JSON events, records and output
files on its standard output. Events are checked against the job's order and
carry the run's nonce; anything else ends the run as tampered.

Without bwrap the same harness runs as a plain child process in its own
session, only with an explicit ``--no-sandbox`` (rlimits still apply; a
process that detaches itself may survive).
"""

import base64
import json
import os
import re
import resource
import secrets
import select
import shutil
import signal
import site
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

__all__ = ["Limits", "HarnessRun", "bwrap_available", "run_harness", "sandbox_overhead", "guarantees", "NO_BWRAP"]

HOME = "/tmp/work"  # the sandbox's private folder (a tmpfs)
COURSE = "/course"  # where the course view is bound
NOBODY = 65534
NO_BWRAP = ("bubblewrap (bwrap) is not available here (not installed, or user namespaces are off), "
            "so submissions cannot be sandboxed. Install it (apt-get install bubblewrap) or, to run "
            "them unsandboxed with your own rights, pass --no-sandbox.")
_MAX_LINE = 48 * 2**20  # a record or a file, base64
_FILE = re.compile(r"^ex\d{1,3}/[A-Za-z0-9_.-]{1,80}\.npy$")


@dataclass
class Limits:
    """Resource limits of one sandbox.

    Attributes:
        memory (int): Bytes of memory (the cgroup's limit, and RLIMIT_AS per process).
        cpu (int): Seconds of CPU time for the whole run (RLIMIT_CPU).
        processes (int): Tasks (processes and threads): the cgroup's ``pids.max``,
            else RLIMIT_NPROC of the sandbox's uid.
        file_size (int): Largest file it may write, in bytes (RLIMIT_FSIZE).
        tmpfs (int): Bytes of ``/tmp`` and of the working folder, each.
    """

    memory: int = 16 * 2**30
    cpu: int = 600
    processes: int = 4096
    file_size: int = 256 * 2**20
    tmpfs: int = 256 * 2**20


@dataclass
class HarnessRun:
    """What one run of the harness reported.

    Attributes:
        events (list[dict]): The events it sent (checked, in order).
        records (dict): Per exercise number, the record it sent.
        finished (bool): It reached the end ("done").
        current (tuple or None): ``(kind, where)`` it was working on when it
            stopped early (``kind`` is ``"cell"`` or ``"exercise"``).
        how (str): ``"done"``, ``"died"`` (the process ended), ``"hung"`` (killed
            at a deadline) or ``"tampered"`` (an event out of order or without the nonce).
        problem (str): What was wrong, for ``"tampered"``.
        timing (dict): Seconds: ``start`` (to "ready"), ``cells``, ``checks``.
    """

    events: list = field(default_factory=list)
    records: dict = field(default_factory=dict)
    finished: bool = False
    current: tuple = None
    how: str = "died"
    problem: str = ""
    timing: dict = field(default_factory=dict)


def _bwrap_env():
    """The environment every ``bwrap`` call starts with: PATH only (the sandbox's own is given by
    ``--setenv``). Under the console script, LD_PRELOAD holds a threaded BLAS, and bwrap then hangs
    making its namespaces."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _is_root():
    return os.geteuid() == 0


@cache
def bwrap_available():
    """Whether ``bwrap`` exists and can make the namespaces (tried once)."""
    if shutil.which("bwrap") is None:
        return False
    try:
        done = subprocess.run(_bwrap_args(None, Limits()) + ["/bin/true"], capture_output=True, timeout=30,
                              env=_bwrap_env())
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@cache
def sandbox_overhead():
    """Seconds bwrap adds to starting a process (median of 5 starts of ``true``)."""
    if not bwrap_available():
        return 0.0
    times = []
    for command in (_bwrap_args(None, Limits()) + ["/bin/true"], ["/bin/true"]):
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, env=_bwrap_env())
            runs.append(time.perf_counter() - start)
        times.append(sorted(runs)[2])
    return max(0.0, times[0] - times[1])


# ---------------------------------------------------------------------------
# cgroups: a memory and a task limit that hold whoever the grader runs as


def _cgroup_mode():
    """``"v2"``, ``"v1"`` or ``None``: where this process can make a cgroup with memory and pids limits."""
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").is_file():
        controllers = (
            (v2 / "cgroup.subtree_control").read_text().split() if (v2 / "cgroup.subtree_control").is_file() else []
        )
        if {"memory", "pids"} <= set(controllers) and os.access(v2, os.W_OK):
            return "v2"
        return None
    if all(os.access(v2 / c, os.W_OK) for c in ("memory", "pids")):
        return "v1"
    return None


class _Cgroup:
    """A cgroup for one sandbox (``None`` paths where none can be made)."""

    def __init__(self, limits):
        self.paths, mode = [], _cgroup_mode()
        name = f"mhacourse-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            if mode == "v2":
                path = Path("/sys/fs/cgroup") / name
                path.mkdir()
                self.paths = [path]
                (path / "memory.max").write_text(str(limits.memory))
                (path / "memory.swap.max").write_text("0") if (path / "memory.swap.max").exists() else None
                (path / "pids.max").write_text(str(limits.processes))
            elif mode == "v1":
                memory, pids = Path("/sys/fs/cgroup/memory") / name, Path("/sys/fs/cgroup/pids") / name
                memory.mkdir()
                self.paths.append(memory)
                pids.mkdir()
                self.paths.append(pids)
                (memory / "memory.limit_in_bytes").write_text(str(limits.memory))
                (pids / "pids.max").write_text(str(limits.processes))
        except OSError:
            self.close()
            self.paths = []

    def join(self):
        """Move the calling process (the child, before exec) into the cgroup."""
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def close(self):
        for path in reversed(self.paths):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # still busy: its processes are being killed
                    time.sleep(0.02)


@cache
def guarantees():
    """What holds on this machine: ``{"sandbox", "uid", "limits", "weaker"}``.

    ``weaker`` lists the flags every graded row carries here: ``"rlimit-only"``
    when no cgroup can be made (memory is then limited per process and tasks
    per uid), ``"unsandboxed"`` without bwrap.
    """
    mode = _cgroup_mode()
    weaker = [] if mode else ["rlimit-only"]
    if not bwrap_available():
        weaker.append("unsandboxed")
    return {"sandbox": "bwrap" if bwrap_available() else None,
            "uid": f"{NOBODY} (privileges dropped before the harness starts)" if _is_root()
            else f"{NOBODY} inside a user namespace, your uid {os.getuid()} outside",
            "limits": f"cgroup {mode}" if mode else "rlimits (no cgroup can be made here)",
            "weaker": weaker}


# ---------------------------------------------------------------------------
# The sandbox's command line


def _read_only_dirs():
    dirs = {"/usr", "/etc", sys.prefix, sys.base_prefix}
    dirs |= {p for p in site.getsitepackages() if os.path.isdir(p)}
    dirs.add(os.path.dirname(os.path.realpath(sys.executable)))
    dirs = sorted(d for d in dirs if os.path.isdir(d))
    return [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]


def _masked(read_only):
    """The installed ``mhacourse`` package, where a read-only bind would make it visible."""
    from .view import PACKAGE_DIR

    package = str(PACKAGE_DIR)
    return [package] if any(package.startswith(d.rstrip("/") + "/") for d in read_only) else []


def _bwrap_args(view, limits):
    """``bwrap ... --`` for a sandbox over ``view`` (the course view folder; ``None``: none)."""
    args = ["bwrap", "--tmpfs", "/"]
    for name in ("bin", "lib", "lib64", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    # /tmp first: an environment installed under /tmp (a fresh clone in CI) is bound on top of it.
    args += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", str(limits.tmpfs), "--tmpfs", "/tmp"]
    read_only = _read_only_dirs()
    made = {"/", "/tmp", "/usr", "/etc", "/dev", "/proc"}
    for directory in read_only:
        # Parents bwrap would make 0700 (unreadable for the sandbox's uid): make them 0755 first.
        parents = list(reversed(Path(directory).parents))[1:]
        for parent in map(str, parents):
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", parent]
        args += ["--ro-bind", directory, directory]
    for directory in _masked(read_only):
        args += ["--perms", "0555", "--size", "4096", "--tmpfs", directory]
    if view is not None:
        args += ["--ro-bind", str(view), COURSE]
    args += ["--perms", "0777", "--size", str(limits.tmpfs), "--tmpfs", HOME, "--chdir", HOME,
             "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--clearenv"]
    if not _is_root():
        args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    return args


def _drop_privileges():
    """As root: what runs first inside, so that no course or learner code runs with root's rights."""
    if not _is_root():
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]


def _limit(limits, cgroup):
    def apply():
        os.setsid()
        if cgroup is not None:
            try:
                cgroup.join()
            except OSError:
                pass
        for which, value in ((resource.RLIMIT_AS, limits.memory), (resource.RLIMIT_CPU, limits.cpu),
                             (resource.RLIMIT_NPROC, limits.processes),
                             (resource.RLIMIT_FSIZE, limits.file_size), (resource.RLIMIT_CORE, 0)):
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                pass
    return apply


def _environment(home, view):
    env = {"HOME": home, "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.mpl",
           "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": view, "PYTHONHASHSEED": "0", "PYTHONNOUSERSITE": "1"}
    for key, value in os.environ.items():
        if key.startswith(("OMP_", "OPENBLAS_", "MKL_", "MLX_", "VECLIB_")):
            env[key] = value
    # One BLAS thread per sandbox (--jobs runs several side by side; the cases are small). A threaded
    # OpenBLAS preloaded without this aborts at start in the sandbox (no /sys to size its pool from).
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(key, "1")
    # The BLAS the grader runs on (mhacourse/blas.py preloads one): answers must compute on the
    # same one as the references they are compared with, or ill-conditioned cases differ.
    if os.environ.get("LD_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["LD_PRELOAD"]
    return env


# ---------------------------------------------------------------------------
# Running the harness


class _Order:
    """The order the job says events come in; anything else is a forged event."""

    def __init__(self, job, nonce):
        self.nonce = nonce
        self.cells = [index for index, _ in job["cells"] if index not in set(job["skip_cells"])]
        self.exercises = [(n, item) for n, item in enumerate(job["exercises"])
                          if item["id"] not in set(job["skip_exercises"])]
        self.state, self.cell, self.exercise, self.calls = "start", -1, -1, 0

    def check(self, event):
        """Raise ``ValueError`` unless ``event`` may come next; return ``(kind, where)`` when an item starts."""
        if event.get("nonce") != self.nonce:
            raise ValueError("an event without the run's nonce")
        kind, what = event.get("event"), event.get("kind")
        if self.state == "start" and kind == "ready":
            self.state = "cells"
            return None
        if self.state == "cells" and kind == "start" and what == "cell":
            where = event.get("where")
            later = [c for c in self.cells if c > self.cell]
            if where not in later:
                raise ValueError(f"cell {where!r} started out of order")
            self.cell, self.state = where, "cell"
            return ("cell", where)
        if self.state == "cell" and kind == "end" and what == "cell" and event.get("where") == self.cell:
            self.state = "cells"
            return None
        if self.state == "cells" and kind == "cells-done":
            self.state = "exercises"
            return None
        if self.state == "exercises" and kind == "start" and what == "exercise":
            later = [(n, item) for n, item in self.exercises if n > self.exercise]
            if not later or event.get("where") not in [item["id"] for _, item in later]:
                raise ValueError("an exercise started out of order")
            self.exercise = next(n for n, item in later if item["id"] == event.get("where"))
            self.state, self.calls = "exercise", 0
            return ("exercise", event.get("where"))
        if self.state == "exercise" and kind == "need":
            item = dict(self.exercises)[self.exercise]
            if event.get("exercise") != self.exercise or event.get("call") != self.calls or self.calls >= item["calls"]:
                raise ValueError("inputs asked for out of order")
            self.calls += 1
            return None
        if self.state == "exercise" and kind in ("file", "record") and event.get("exercise") == self.exercise:
            return None
        if self.state == "exercise" and kind == "end" and what == "exercise":
            self.state = "exercises"
            return None
        if self.state == "exercises" and kind == "done":
            self.state = "done"
            return None
        raise ValueError(f"an unexpected event {str(kind)[:40]!r} while in {self.state}")


def run_harness(job, *, view, feed, folder, sandboxed, deadlines, limits=None):
    """Run the harness on ``job`` and collect its report.

    Args:
        job (dict): The cells, the items to skip and the exercises (see :mod:`.sandbox.harness`).
        view (Path): The course view's folder (:func:`mhacourse.grading.view.build_view`).
        feed (callable): ``(exercise number, call number) -> bytes``, the pickled inputs of a
            call, asked for only after every cell ran.
        folder (Path): A private folder of the grader where output files are written.
        sandboxed (bool): Use bwrap; else a plain child process.
        deadlines (dict): Seconds: ``"total"`` (absolute, from the start), ``"start"``,
            ``"cell"``, ``"exercise"`` and ``None`` (between items).
        limits (Limits, optional): Resource limits.

    Returns:
        HarnessRun: the events, records, and where it stopped if it did not finish.
    """
    limits = limits or Limits()
    folder = Path(folder)
    nonce = secrets.token_hex(8)
    job = dict(job, nonce=nonce)
    order = _Order(job, nonce)
    entry = ["-X", "frozen_modules=off", "-c", "from mhacourse.grading.sandbox.harness import main; main()"]
    cgroup = None
    if sandboxed:
        command = _bwrap_args(view, limits) + [
            arg for key, value in _environment(HOME, COURSE).items() for arg in ("--setenv", key, value)
        ] + ["--"] + _drop_privileges() + [sys.executable] + entry
        env, cwd = _bwrap_env(), "/"
        cgroup = _Cgroup(limits)
    else:
        home = folder / "home"
        home.mkdir(exist_ok=True)
        command, env, cwd = [sys.executable] + entry, _environment(str(home), str(view)), str(home)
    run = HarnessRun()
    started = time.perf_counter()
    marks = {}
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               cwd=cwd, env=env, preexec_fn=_limit(limits, cgroup), close_fds=True)
    os.set_blocking(process.stdin.fileno(), False)
    pending = _frame(json.dumps(job).encode())
    buffer = b""
    absolute = time.monotonic() + deadlines["total"]
    current, until = None, time.monotonic() + deadlines["start"]
    try:
        while True:
            wait = min(until, absolute) - time.monotonic()
            if wait <= 0:
                run.how = "hung"
                break
            writers = [process.stdin] if pending else []
            ready, writable, _ = select.select([process.stdout], writers, [], wait)
            if writable:
                try:
                    pending = pending[os.write(process.stdin.fileno(), pending[:1 << 16]):]
                except BlockingIOError:
                    pass
                except OSError:
                    pending = b""
            if not ready:
                continue
            chunk = os.read(process.stdout.fileno(), 1 << 20)
            if not chunk:
                run.how = "died"
                break
            buffer += chunk
            if len(buffer) > _MAX_LINE and b"\n" not in buffer:
                run.how, run.problem = "tampered", "an event longer than any record"
                break
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = _parse(line)
                try:
                    if event is None:
                        raise ValueError("a line that is not a JSON event")
                    started_item = order.check(event)
                except ValueError as error:
                    run.how, run.problem = "tampered", str(error)
                    break
                kind = event.get("event")
                if kind == "file":
                    _save_file(event, folder)
                    continue
                if kind == "record":
                    run.records[event["exercise"]] = event.get("record")
                    continue
                run.events.append(event)
                if started_item is not None:
                    current, until = started_item, time.monotonic() + deadlines[started_item[0]]
                elif kind == "ready":
                    marks.setdefault("ready", time.perf_counter())
                    until = time.monotonic() + deadlines[None]
                elif kind == "need":
                    pending += _frame(feed(event["exercise"], event["call"]))
                elif kind == "end":
                    current, until = None, time.monotonic() + deadlines[None]
                elif kind == "cells-done":
                    marks.setdefault("cells", time.perf_counter())
                    until = time.monotonic() + deadlines[None]
                elif kind == "done":
                    run.finished, run.how = True, "done"
            if run.finished or run.how == "tampered":
                break
    finally:
        _kill(process)
        if cgroup is not None:
            cgroup.close()
    end = time.perf_counter()
    ready = marks.get("ready", end)
    cells = marks.get("cells", end)
    run.current = None if run.finished else current
    run.timing = {"start": round(ready - started, 4), "cells": round(max(0.0, cells - ready), 4),
                  "checks": round(max(0.0, end - cells), 4)}
    return run


def _frame(payload):
    return len(payload).to_bytes(8, "big") + payload


def _save_file(event, folder):
    """An output file the harness sent (name checked, size bounded); a bad one is left out."""
    from ..sandbox.codec import MAX_BYTES

    name, data = event.get("name"), event.get("data")
    if not isinstance(name, str) or not _FILE.match(name) or not isinstance(data, str):
        return
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return
    if len(raw) > MAX_BYTES + 4096:
        return
    target = folder / name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(raw)


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
    for stream in (process.stdin, process.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
