"""Grade submitted exercise notebooks: ``mhacourse grade SUBMISSION...``.

Each submission runs in a fresh kernel, one code cell at a time, with a time
limit per cell. Then, for every exercise of the submission's lesson, the grader
sends its own code to the kernel: it drops every ``mhacourse`` module from
``sys.modules``, imports ``mhacourse.grading`` again from this installation's
files, looks up the exercise's ``answer_name`` in the learner's namespace, runs
``check`` on it and writes the result as JSON to a file whose name holds a
random nonce made only after the learner's cells have run. Scores are read from
those files only, never from what the notebook printed, so printing "passed",
redefining ``check`` or patching ``mhacourse.grading`` in the notebook changes
nothing. The submission file is read once and never written.

A cell that fails does not stop the run: an exception is recorded and the next
cell runs, so exercises whose answers were defined still earn their points. A
cell that runs past the time limit is interrupted (and the run goes on); a
cell that kills the kernel, or that cannot be interrupted, is skipped in a
fresh kernel that runs the notebook again.

Which exercises a submission holds comes from the course's registry, for the
lesson named in the notebook's metadata (or its file name), never from the
exercise list a learner could edit.

The grader runs the learner's code with your rights: grade untrusted
submissions inside a container. Code in the same process can always rewrite
Python itself (builtins, import machinery, MLX); the grader does not try to
win that race, but lists such code under ``flags`` for you to read.
"""

import csv
import io
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import nbformat

import mhacourse

# Statuses, most serious first: a row shows the first that applies.
STATUSES = (
    "invalid-notebook",  # not JSON, or not a version 4 notebook
    "unknown-lesson",  # no lesson in the metadata or the file name
    "tampered",  # an answer rebound grading code while checked, or is the course's own (scored 0)
    "kernel-died",  # a cell killed the kernel (skipped in a rerun)
    "timeout",  # a cell ran past --timeout
    "error",  # a cell raised an exception
    "grader-error",  # the grader could not check an exercise
    "cells-missing",  # cells of the exercise notebook were deleted
    "cells-duplicated",  # cells of the exercise notebook appear twice
    "ok",
)
MAX_RUNS = 3
_TIMED_OUT = {"ename": "CellTimeoutError", "evalue": "the cell ran past the time limit"}
CURRENT_PYTHON = "mhacourse-grader-current-python"  # a kernel running sys.executable
PROBE_TIMEOUT = 10  # seconds an interrupted kernel has to answer again
_LESSON_IN_NAME = re.compile(r"^(\d{2})(?:[_\-. ]|$)")
_SUSPICIOUS = {
    "builtins": re.compile(r"\b__builtins__\b|\bbuiltins\b"),
    "sys.modules": re.compile(r"\bsys\s*\.\s*modules\b"),
    "import machinery": re.compile(r"\bmeta_path\b|\bpath_hooks\b|\b__import__\b|\bimportlib\b"),
    "IPython hooks": re.compile(r"input_transformers|ast_transformers|\.events\s*\.\s*register"),
    "threads or processes": re.compile(r"\bthreading\b|\bmultiprocessing\b|\bsubprocess\b|\bos\s*\.\s*fork\b"),
    "patches the grading package": re.compile(
        r"\bmhacourse\.grading(?:\.\w+)*\.\w+\s*=(?!=)|\bCheckResult\s*\.\s*\w+\s*=(?!=)|\bsetattr\s*\("
    ),
}

# Runs inside the learner's kernel, in a namespace of its own (see _grader_cell).
_GRADER_CODE = r'''
import sys, os, json, sysconfig, threading, importlib, importlib.machinery, importlib.util
user_ns = sys._getframe(1).f_globals
record = {"exercise_id": ARGS["exercise_id"], "defined": False, "passed": False, "points": 0.0, "report": "",
          "error": None, "tampered": []}
saved_meta_path = list(sys.meta_path)

def fingerprint():
    """Identity of every function, class and descriptor in the loaded mhacourse modules."""
    prints = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "mhacourse" or module_name.startswith("mhacourse.")):
            continue
        for name, value in list(vars(module).items()):
            if isinstance(value, type) and str(getattr(value, "__module__", "")).startswith("mhacourse"):
                for member, member_value in list(vars(value).items()):
                    if callable(member_value) or hasattr(member_value, "__get__"):
                        prints[(module_name, name, member)] = id(member_value)
            if callable(value):
                prints[(module_name, name)] = id(value)
    return prints

def course_path(filename):
    """The path of a file inside a mhacourse package ("grading/registry.py"), or None."""
    marker = os.sep + "mhacourse" + os.sep
    return filename.replace("/", os.sep).rsplit(marker, 1)[1] if marker in filename else None

def code_key(function):
    code = getattr(function, "__code__", None)
    return (course_path(code.co_filename), code.co_firstlineno) if code is not None else None

LIBRARIES = tuple({os.path.realpath(path) + os.sep for key, path in sysconfig.get_paths().items()
                   if key in ("stdlib", "platstdlib", "purelib", "platlib")})

def forbidden_code(grading, exercise_id):
    """Code an answer must not call: the grading package's functions and methods, and
    the course's implementation this exercise asks for (its reference). Earlier stages
    stay allowed: reusing the course's split_heads inside a layer is what it teaches."""
    functions = []
    for module_name, module in list(sys.modules.items()):
        if module is not None and module_name.startswith("mhacourse.grading"):
            for value in list(vars(module).values()):
                if str(getattr(value, "__module__", "")) == module_name:
                    functions.append(value)
                    if isinstance(value, type):
                        functions += list(vars(value).values())
    reference = grading.get_exercise(exercise_id).reference
    functions.append(reference)
    if isinstance(reference, type) and str(reference.__module__).startswith("mhacourse"):
        functions += list(vars(reference).values())
    keys = {code_key(function) for function in functions}
    keys.discard(None)
    return keys

def watcher(forbidden, borrowed):
    """A profile function noting the learner's calls into ``forbidden`` code.

    The checker calls the reference itself, and MLX calls back into the
    checker's functions; only a call made from the learner's own code counts
    (an answer that wraps get_exercise(...).reference, or the course's
    implementation of the same exercise).
    """
    def watch(frame, event, arg):
        if event != "call" or frame.f_back is None:
            return
        callee = course_path(frame.f_code.co_filename)
        if callee is None or (callee, frame.f_code.co_firstlineno) not in forbidden:
            return
        caller = frame.f_back.f_code.co_filename
        if (caller == "<mhacourse grader>" or course_path(caller) is not None
                or os.path.realpath(caller).startswith(LIBRARIES)):
            return  # the grader, the checker, or MLX and the standard library calling back
        borrowed.add(f"the answer calls the course's {frame.f_code.co_name} ({callee.replace(os.sep, '/')})")
    return watch

try:
    sys.meta_path[:] = [importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter, importlib.machinery.PathFinder]
    for name in [name for name in list(sys.modules) if name == "mhacourse" or name.startswith("mhacourse.")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location("mhacourse", ARGS["package_init"], submodule_search_locations=[ARGS["package_dir"]])
    package = importlib.util.module_from_spec(spec)
    sys.modules["mhacourse"] = package
    spec.loader.exec_module(package)
    grading = importlib.import_module("mhacourse.grading")
    if ARGS["answer_name"] in user_ns:
        record["defined"] = True
        origin = str(getattr(user_ns[ARGS["answer_name"]], "__module__", None) or "")
        if origin == "mhacourse" or origin.startswith("mhacourse."):
            record["tampered"] = [f"the answer is the course's own code from {origin}"]
            raise LookupError("the answer was imported from the course package")
        answer = user_ns[ARGS["answer_name"]]
        if isinstance(answer, type) and any(str(getattr(base, "__module__", "")).startswith("mhacourse")
                                            for base in answer.__mro__[1:]):
            record["tampered"] = ["the answer subclasses the course's own class"]
            raise LookupError("the answer subclasses a class of the course package")
        borrowed = set()
        watch = watcher(forbidden_code(grading, ARGS["exercise_id"]), borrowed)
        before = fingerprint()
        threading.setprofile(watch)
        sys.setprofile(watch)
        try:
            result = grading.check(ARGS["exercise_id"], answer)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
        after = fingerprint()
        record["tampered"] = ["rebound " + ".".join(key) for key, value in sorted(before.items()) if after.get(key) != value][:5]
        record["tampered"] += sorted(borrowed)[:5]
        if type(result) is not grading.CheckResult:
            raise TypeError(f"check returned {type(result).__name__}, not CheckResult")
        record["passed"] = result.passed is True
        record["points"] = float(result.points)
        record["report"] = str(result.report())
except BaseException as error:
    record["error"] = f"{type(error).__name__}: {error}"
finally:
    sys.meta_path[:] = saved_meta_path
with open(ARGS["result_path"], "x", encoding="utf-8") as file:
    json.dump(record, file)
'''


def _grader_cell(args):
    """Source of the cell that checks one exercise.

    It reaches ``exec`` through the ``builtins`` module, not through names the
    learner's namespace could shadow, and runs the grader in a fresh namespace.
    """
    return (
        "import builtins as __mhacourse_builtins__\n"
        f"__mhacourse_builtins__.exec(__mhacourse_builtins__.compile({_GRADER_CODE!r}, '<mhacourse grader>', 'exec'), "
        f"{{'__builtins__': __mhacourse_builtins__, '__name__': '__mhacourse_grader__', 'ARGS': {args!r}}})\n"
    )


# ---------------------------------------------------------------------------
# The registry: which exercises a lesson has.


def _registry():
    from mhacourse.grading import exercise_ids, get_exercise

    exercises = {}
    for exercise_id in exercise_ids():
        exercise = get_exercise(exercise_id)
        exercises.setdefault(str(exercise.lesson), []).append(
            {"id": exercise.id, "answer_name": exercise.answer_name, "max_points": float(exercise.points)}
        )
    return exercises


def lesson_exercises(lesson):
    """The exercises of one lesson, in the registry's order.

    Args:
        lesson (str): two digits, e.g. ``"02"``.

    Returns:
        list(dict): ``{"id", "answer_name", "max_points"}`` per exercise
        (empty for a lesson the registry does not know).
    """
    return list(_registry().get(lesson, []))


@lru_cache(maxsize=None)
def _reference_cells(lesson):
    """The cells of the generated exercise notebook for ``lesson``, or None."""
    from mhacourse.grading import build

    try:
        paths = build.source_paths(build.project_root())
    except FileNotFoundError:
        return None
    for path in paths:
        source = build.read_source(path)
        if str(source.metadata.get("mhacourse", {}).get("lesson")) == lesson:
            exercise, _ = build.build_notebook(source, path=path)
            return tuple(
                (cell["id"], cell.cell_type, cell.source.strip(), build.STUB[1] in cell.source)
                for cell in exercise.cells
            )
    return None


# ---------------------------------------------------------------------------
# Reading a submission.


class InvalidNotebook(ValueError):
    """The submission is not a readable version 4 notebook."""


def read_submission(data):
    """Parse a submission's bytes into a notebook, without trusting its shape.

    Args:
        data (bytes): the file's content.

    Returns:
        tuple(NotebookNode, list): the notebook, and the raw cell ids (None
        where a cell has none).

    Raises:
        InvalidNotebook: when the bytes are not a version 4 notebook.
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidNotebook(f"invalid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("nbformat") != 4 or not isinstance(raw.get("cells"), list):
        raise InvalidNotebook("not a version 4 Jupyter notebook")
    cells, ids = [], []
    for index, cell in enumerate(raw["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise InvalidNotebook(f"cell {index} is not a notebook cell")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(part, str) for part in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise InvalidNotebook(f"cell {index} has no text source")
        ids.append(cell.get("id") if isinstance(cell.get("id"), str) else None)
        maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
        cells.append(maker.get(cell["cell_type"], nbformat.v4.new_raw_cell)(source))
    nb = nbformat.v4.new_notebook(cells=cells)
    metadata = raw.get("metadata")
    nb.metadata = nbformat.from_dict(metadata) if isinstance(metadata, dict) else nbformat.NotebookNode()
    return nb, ids


def identify_lesson(nb, path, known, forced=None):
    """Which lesson a submission belongs to.

    Args:
        nb (NotebookNode or None): the submission (None if unreadable).
        path (Path): its file, whose name may start with the lesson (``02_...``).
        known (collection): the lessons the registry knows.
        forced (str, optional): the lesson given on the command line.

    Returns:
        tuple(str or None, list(str)): the lesson and notes for the report.
    """
    if forced is not None:
        return forced, []
    meta = None
    if nb is not None:
        info = nb.metadata.get("mhacourse")
        if isinstance(info, dict) and str(info.get("lesson")) in known:
            meta = str(info.get("lesson"))
    match = _LESSON_IN_NAME.match(Path(path).name)
    named = match[1] if match and match[1] in known else None
    notes = []
    if meta and named and meta != named:
        notes.append(f"metadata says lesson {meta}, the file name {named}: graded as {meta}")
    return meta or named, notes


def structure_notes(nb, ids, lesson):
    """Deleted and duplicated cells, compared with the generated exercise notebook.

    Returns:
        tuple(list, list): indices (in the exercise notebook) of missing cells,
        and of cells that appear more than once in the submission.
    """
    reference = _reference_cells(lesson)
    if reference is None:
        return [], []
    id_counts = Counter(cell_id for cell_id in ids if cell_id)
    source_counts = Counter(cell.source.strip() for cell in nb.cells if cell.source.strip())
    missing, duplicated = [], []
    for index, (cell_id, _, source, is_exercise) in enumerate(reference):
        by_source = 0 if is_exercise or not source else source_counts[source]
        if id_counts[cell_id] == 0 and by_source == 0 and (id_counts or not is_exercise):
            missing.append(index)
        if id_counts[cell_id] > 1 or by_source > 1:
            duplicated.append(index)
    return missing, duplicated


def suspicious_code(nb):
    """Names of the patterns in the learner's code that deserve a human look."""
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    return [name for name, pattern in _SUSPICIOUS.items() if pattern.search(code)]


# ---------------------------------------------------------------------------
# Running a submission.


def _kernel_client_class():
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    class Specs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            if kernel_name == CURRENT_PYTHON:
                return KernelSpec(
                    argv=[sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name="mhacourse grader",
                    language="python",
                )
            return super().get_kernel_spec(kernel_name)

    class Client(NotebookClient):
        def create_kernel_manager(self):
            # Unix sockets in the run's own folder: no TCP ports for parallel workers to race for.
            self.km = AsyncKernelManager(
                kernel_name=self.kernel_name,
                kernel_spec_manager=Specs(),
                transport="ipc",
                ip=str(Path(self.resources["metadata"]["path"]) / "kernel"),
                config=self.config,
            )
            return self.km

    return Client


class _Restart(Exception):
    """The kernel died or hung: run again in a fresh one, skipping ``where``."""

    def __init__(self, kind, where):
        super().__init__(kind, where)
        self.kind, self.where = kind, where


def _kernel_env(package_dir):
    env = dict(os.environ)
    parent = str(Path(package_dir).parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (parent, env.get("PYTHONPATH")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _run_once(nb, exercises, *, timeout, kernel, package_dir, skip_cells, skip_exercises):
    """Run the learner's cells, then the grader's, in one fresh kernel.

    Returns:
        tuple(dict, dict): per code-cell index ``{"status", "error"}``, and per
        exercise id the grader's record (or None where none came back).

    Raises:
        _Restart: when the kernel died or could not be interrupted.
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # the client writes outputs into its copy
    n_cells = len(nb.cells)
    replies = {}
    client = _kernel_client_class()(
        nb,
        timeout=timeout,
        kernel_name=kernel or CURRENT_PYTHON,
        allow_errors=True,
        error_on_timeout=_TIMED_OUT,
        record_timing=False,
        shutdown_kernel="immediate",
        startup_timeout=120,
        iopub_timeout=2,
        on_cell_executed=lambda cell, cell_index, execute_reply: replies.__setitem__(cell_index, execute_reply),
    )
    cells, records = {}, {}

    def execute(index, cell_timeout, where):
        # On a timeout the client interrupts the kernel and reports _TIMED_OUT as the reply.
        client.timeout, client.interrupt_on_timeout = cell_timeout, True
        try:
            client.execute_cell(nb.cells[index], index, store_history=index < n_cells)
        except DeadKernelError:
            raise _Restart("kernel-died", where) from None
        reply = replies.get(index, {}).get("content", {})
        if reply.get("ename") == _TIMED_OUT["ename"] and "traceback" not in reply:
            nb.cells.append(nbformat.v4.new_code_cell("pass"))  # does the kernel answer again?
            client.timeout, client.interrupt_on_timeout = max(2, min(PROBE_TIMEOUT, cell_timeout)), False
            try:
                client.execute_cell(nb.cells[-1], len(nb.cells) - 1, store_history=False)
            except (CellTimeoutError, DeadKernelError):
                raise _Restart("timeout", where) from None
            return "timeout", f"interrupted after {cell_timeout:g} s"
        if reply.get("status") == "error":
            return "error", f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}"[:500]
        return "ok", None

    with tempfile.TemporaryDirectory(prefix="mhacourse-grade-") as workdir:
        client.resources = {"metadata": {"path": workdir}}
        with client.setup_kernel(env=_kernel_env(package_dir), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
            for index, cell in enumerate(nb.cells[:n_cells]):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                if index in skip_cells:
                    cells[index] = {"status": "skipped", "error": None}
                    continue
                status, error = execute(index, timeout, ("cell", index))
                cells[index] = {"status": status, "error": error}

            results = Path(tempfile.mkdtemp(prefix="mhacourse-results-"))
            nonce = secrets.token_hex(16)
            try:
                for number, exercise in enumerate(exercises):
                    if exercise["id"] in skip_exercises:
                        continue
                    result_path = results / f"{nonce}-{number}.json"
                    args = {
                        "exercise_id": exercise["id"],
                        "answer_name": exercise["answer_name"],
                        "package_dir": str(package_dir),
                        "package_init": str(Path(package_dir) / "__init__.py"),
                        "result_path": str(result_path),
                    }
                    nb.cells.append(nbformat.v4.new_code_cell(_grader_cell(args)))
                    status, _ = execute(len(nb.cells) - 1, timeout, ("exercise", exercise["id"]))
                    records[exercise["id"]] = _read_record(result_path, exercise["id"], status)
            finally:
                for leftover in results.iterdir():
                    leftover.unlink()
                results.rmdir()
    return cells, records


def _read_record(path, exercise_id, status):
    if status == "timeout":
        return {"error": "the check ran past the time limit"}
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"error": "the grader wrote no result"}
    if not isinstance(record, dict) or record.get("exercise_id") != exercise_id:
        return {"error": "the grader's result is malformed"}
    return record


def _score(exercise, record):
    """Points for one exercise from the grader's record, bounded by the registry."""
    row = {"id": exercise["id"], "answer_name": exercise["answer_name"], "max_points": exercise["max_points"]}
    record = record or {"error": "not checked"}
    tampered = record.get("tampered") or []
    passed = record.get("passed") is True and not tampered
    points = record.get("points") if passed else 0.0
    points = float(points) if isinstance(points, (int, float)) and points == points else 0.0
    row.update(
        tampered=[str(name) for name in tampered],
        defined=record.get("defined") is True,
        passed=passed,
        points=min(max(points, 0.0), exercise["max_points"]),
        report=str(record.get("report") or ""),
        error=record.get("error"),
    )
    return row


def grade_submission(path, *, timeout=60, kernel=None, lesson=None, package_dir=None):
    """Grade one submitted notebook; never raises for a broken submission.

    Args:
        path (str or Path): the notebook.
        timeout (float): seconds allowed per cell (and per check). Default: ``60``.
        kernel (str, optional): a kernelspec name; by default a kernel running
            this very Python interpreter.
        lesson (str, optional): grade as this lesson whatever the notebook says.
        package_dir (str or Path, optional): the ``mhacourse`` package the
            grader imports in the kernel. Default: this installation's.

    Returns:
        dict: the report (``file``, ``lesson``, ``status``, ``detail``,
        ``total``, ``max``, ``exercises``, ``cells``, ``flags``, ``seconds``).
    """
    started = time.perf_counter()
    path = Path(path)
    package_dir = Path(package_dir or Path(mhacourse.__file__).parent).resolve()
    registry = _registry()
    report = {"file": str(path), "lesson": None, "status": "ok", "detail": "", "total": 0.0, "max": 0.0,
              "exercises": [], "cells": [], "flags": []}
    problems, notes = set(), []
    nb = ids = None
    try:
        nb, ids = read_submission(path.read_bytes())
    except (OSError, InvalidNotebook) as error:
        problems.add("invalid-notebook")
        notes.append(str(error))
    report["lesson"], lesson_notes = identify_lesson(nb, path, registry, lesson)
    notes += lesson_notes
    exercises = registry.get(report["lesson"], []) if report["lesson"] else []
    if not exercises and "invalid-notebook" not in problems:
        problems.add("unknown-lesson")
        notes.append("cannot tell which lesson this notebook belongs to (use --lesson)")

    records = {}
    if not problems:
        missing, duplicated = structure_notes(nb, ids, report["lesson"])
        if missing:
            problems.add("cells-missing")
            notes.append(f"exercise notebook cells missing: {missing}")
        if duplicated:
            problems.add("cells-duplicated")
            notes.append(f"exercise notebook cells duplicated: {duplicated}")
        report["flags"] = suspicious_code(nb)
        records, cells = _run_with_restarts(nb, exercises, timeout=timeout, kernel=kernel, package_dir=package_dir,
                                            problems=problems, notes=notes)
        report["cells"] = [{"index": index, **cells[index]} for index in sorted(cells)]
        for index, cell in sorted(cells.items()):
            if cell["status"] in ("error", "timeout", "kernel-died"):
                problems.add(cell["status"])
                notes.append(f"cell {index}: {cell['error']}")

    report["exercises"] = [_score(exercise, records.get(exercise["id"])) for exercise in exercises]
    tampered = [row for row in report["exercises"] if row["tampered"]]
    if tampered:
        problems.add("tampered")
        notes += [f"{row['id']}: tampered ({', '.join(row['tampered'])})" for row in tampered]
    failed = [row for row in report["exercises"] if row["error"] and records and not row["tampered"]]
    if failed:
        problems.add("grader-error")
        notes += [f"{row['id']}: {row['error']}" for row in failed]
    report["total"] = sum(row["points"] for row in report["exercises"])
    report["max"] = sum(row["max_points"] for row in report["exercises"])
    report["status"] = next(status for status in STATUSES if status in problems or status == "ok")
    report["detail"] = "; ".join(notes)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _run_with_restarts(nb, exercises, *, timeout, kernel, package_dir, problems, notes):
    skip_cells, skip_exercises, failures, last_error = set(), set(), {}, None
    for _ in range(MAX_RUNS):
        try:
            cells, records = _run_once(nb, exercises, timeout=timeout, kernel=kernel, package_dir=package_dir,
                                       skip_cells=skip_cells, skip_exercises=skip_exercises)
            break
        except _Restart as restart:
            kind, where = restart.kind, restart.where[1]
            if restart.where[0] == "cell":
                skip_cells.add(where)
                failures[where] = {"status": kind, "error": "killed the kernel" if kind == "kernel-died"
                                   else f"could not be interrupted after {timeout:g} s; skipped in a rerun"}
            else:
                skip_exercises.add(where)
                notes.append(f"checking {where}: the kernel {'died' if kind == 'kernel-died' else 'hung'}")
                problems.add("grader-error")
        except Exception as error:  # the kernel did not start, or nbclient failed: try again
            last_error = f"{type(error).__name__}: {error}"
    else:
        problems.add("grader-error")
        notes.append(f"gave up after {MAX_RUNS} runs" + (f" (last: {last_error})" if last_error else ""))
        return {}, failures
    cells.update(failures)
    records.update({exercise_id: {"error": "the check killed or hung the kernel"} for exercise_id in skip_exercises})
    return records, cells


# ---------------------------------------------------------------------------
# Batches, reports and the command line.


def collect_submissions(paths):
    """Expand notebooks and folders of notebooks into a sorted list of files.

    Args:
        paths (list): notebooks (``.ipynb``) or folders searched recursively.

    Returns:
        list(Path): the notebooks, checkpoints excluded.

    Raises:
        ValueError: for a path that does not exist or is not a notebook.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.is_file() and path.suffix == ".ipynb":
            found.append(path)
        else:
            raise ValueError(f"SUBMISSION must be a .ipynb file or a folder, got {str(path)!r}")
    return found


def grade_many(paths, *, jobs=1, timeout=60, kernel=None, lesson=None, progress=None):
    """Grade several notebooks, ``jobs`` at a time, in the order given.

    Args:
        paths (list): the notebooks.
        jobs (int): worker processes. Default: ``1``.
        timeout (float): seconds per cell. Default: ``60``.
        kernel (str, optional): kernelspec name (see :func:`grade_submission`).
        lesson (str, optional): grade every notebook as this lesson.
        progress (bool, optional): show a progress bar; None shows it on a terminal.

    Returns:
        list(dict): one report per notebook, in the order of ``paths``.
    """
    from tqdm import tqdm

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    options = {"timeout": timeout, "kernel": kernel, "lesson": lesson}
    reports = [None] * len(paths)
    bar = tqdm(total=len(paths), unit="nb", desc="grading", disable=(not sys.stderr.isatty()) if progress is None else not progress)
    with bar:
        if jobs == 1 or len(paths) <= 1:
            for index, path in enumerate(paths):
                reports[index] = _grade_safely(path, options)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(paths)), mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_grade_safely, path, options): index for index, path in enumerate(paths)}
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        reports[index] = future.result()
                    except Exception as error:  # the worker process itself died
                        reports[index] = _failed_report(paths[index], error)
                    bar.update()
    return reports


def _grade_safely(path, options):
    try:
        return grade_submission(path, **options)
    except Exception as error:
        return _failed_report(path, error)


def _failed_report(path, error):
    return {"file": str(path), "lesson": None, "status": "grader-error", "detail": f"{type(error).__name__}: {error}",
            "total": 0.0, "max": 0.0, "exercises": [], "cells": [], "flags": [], "seconds": 0.0}


def _format_points(value):
    return f"{value:g}"


def csv_text(reports):
    """The CSV table: one row per submission, one points column per exercise.

    Columns: ``file, lesson, status, <exercise ids...>, total, max, flags,
    detail``. An exercise column is empty for submissions of other lessons.
    """
    exercise_columns = []
    for report in reports:
        for row in report["exercises"]:
            if row["id"] not in exercise_columns:
                exercise_columns.append(row["id"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "lesson", "status", *exercise_columns, "total", "max", "flags", "detail"])
    for report in reports:
        points = {row["id"]: _format_points(row["points"]) for row in report["exercises"]}
        writer.writerow([report["file"], report["lesson"] or "", report["status"],
                         *(points.get(column, "") for column in exercise_columns),
                         _format_points(report["total"]), _format_points(report["max"]),
                         "; ".join(report["flags"]), report["detail"]])
    return buffer.getvalue()


def _json_names(reports):
    files = [Path(report["file"]).resolve() for report in reports]
    common = Path(os.path.commonpath([str(f.parent) for f in files])) if files else Path()
    names = {}
    for report, file in zip(reports, files):
        stem = "__".join(file.relative_to(common).with_suffix("").parts)
        name, n = f"{stem}.json", 1
        while name in names.values():
            n += 1
            name = f"{stem}-{n}.json"
        names[id(report)] = name
    return names


def write_reports(reports, *, out=None, json_dir=None):
    """Write the CSV (``out``; ``"-"`` for stdout) and one JSON report per submission."""
    if out is not None:
        text = csv_text(reports)
        if str(out) == "-":
            sys.stdout.write(text)
        else:
            Path(out).write_text(text, encoding="utf-8")
    if json_dir is not None:
        json_dir = Path(json_dir)
        json_dir.mkdir(parents=True, exist_ok=True)
        names = _json_names(reports)
        for report in reports:
            (json_dir / names[id(report)]).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def configure(parser):
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                        help="submitted notebooks, or folders searched for *.ipynb")
    parser.add_argument("--out", default="grades.csv", help="CSV file to write ('-' for stdout; default: grades.csv)")
    parser.add_argument("--json", dest="json_dir", default=None, metavar="DIR",
                        help="also write one JSON report per submission into DIR")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded in parallel (default: 1)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds allowed per cell (default: 60)")
    parser.add_argument("--lesson", default=None, help="grade every submission as this lesson (e.g. 02)")
    parser.add_argument("--kernel", default=None,
                        help="kernelspec to run submissions in (default: this Python interpreter)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args):
    try:
        paths = collect_submissions(args.submissions)
        if not paths:
            raise ValueError(f"no notebooks found in {args.submissions}")
        reports = grade_many(paths, jobs=args.jobs, timeout=args.timeout, kernel=args.kernel, lesson=args.lesson,
                             progress=False if args.no_progress else None)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_reports(reports, out=args.out, json_dir=args.json_dir)
    statuses = Counter(report["status"] for report in reports)
    total, best = sum(r["total"] for r in reports), sum(r["max"] for r in reports)
    print(f"graded {len(reports)} notebook(s): " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
          + f"; {_format_points(total)} of {_format_points(best)} points in all", file=sys.stderr)
    if args.out not in (None, "-"):
        print(f"wrote {args.out}" + (f" and {args.json_dir}/" if args.json_dir else ""), file=sys.stderr)
    return 0
