"""Grade submitted exercise notebooks: ``mhacourse grade SUBMISSION...``.

The sandbox computes, the grader judges:

1. For each exercise of the submission's lesson (from the course's registry,
   never from the notebook), this trusted process builds the inputs of every
   call: the visible cases, hidden cases of other sizes drawn from a per-run
   secret seed (``--secret-file`` or ``MHACOURSE_GRADE_SECRET`` to share one
   between shards; else a fresh one), and the property checks' inputs.
2. One sandbox per submission (:mod:`.sandbox`: bubblewrap, no network, its
   own PIDs, uid nobody, rlimits, a private folder) runs the notebook's cells
   from a private copy, then calls each answer on those inputs
   (:mod:`.harness`) and writes the outputs as plain data (``.npy`` read with
   ``allow_pickle=False``, JSON).
3. Back here, :func:`mhacourse.grading.registry.judge` computes the
   references, compares, matches known mistakes and applies the policy
   (:mod:`.policy`), exactly as ``check()`` does in a notebook.

Nothing computed inside the sandbox is trusted: a patched ``json``,
``numpy``, ``mlx`` or ``check`` there changes only the submission's own
outputs, and what the sandbox reports about itself (cell statuses, the
answer's code, calls it saw) can only lower a score, never raise one.

A cell that fails does not stop the run. A cell that kills the sandbox's
Python or hangs past ``--timeout`` is skipped in a rerun, as many reruns as
it takes; an answer that kills it scores 0 for its own exercise only.
Cells are matched to the exercise notebook by content (the answer's name,
the cell's text), not only by id, so a notebook pasted into a new file grades
the same. The submission file is read once and never written.
"""

import hashlib
import json
import os
import pickle
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import nbformat

from mhacourse.grading import textio

# Statuses, most serious first: a row shows the first that applies.
STATUSES = (
    "refused",  # a symbolic link, not a notebook of the student's (not opened)
    "invalid-notebook",  # not JSON, or not a version 4 notebook
    "unknown-lesson",  # no lesson in the metadata or the file name
    "tampered",  # an answer uses or copies the course's code, or the harness was changed (scored 0)
    "forbidden",  # an answer uses a function its exercise forbids (scored 0)
    "needs-review",  # dynamic code the grader cannot judge from the source: points kept, listed for a human
    "kernel-died",  # a cell (or an answer) killed the sandbox's Python (skipped in a rerun)
    "timeout",  # a cell ran past --timeout
    "error",  # a cell raised an exception
    "grader-error",  # the grader could not check an exercise
    "cells-missing",  # cells of the exercise notebook were deleted
    "cells-duplicated",  # cells of the exercise notebook appear twice
    "ok",
)
SECRET_ENV = "MHACOURSE_GRADE_SECRET"
MAX_NOTEBOOK_BYTES = 64 * 2**20
STARTUP_TIMEOUT = 120  # seconds for the sandbox's Python to import MLX and the course
GRACE = 5  # seconds past a deadline before a hung sandbox is killed
_LESSON_IN_NAME = re.compile(r"^(\d{2})(?:[_\-. ]|$)")
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
                (cell["id"], cell.cell_type, cell.source.strip(), cell.cell_type == "code" and build.STUB[1] in cell.source,
                 frozenset(_defined_names(cell.source)) if cell.cell_type == "code" else frozenset())
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
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    try:
        return _parse_submission(data)
    except InvalidNotebook:
        raise
    except Exception as error:  # noqa: BLE001 - however malformed: never a grader error
        raise InvalidNotebook(f"not a readable notebook ({type(error).__name__})") from None


def _parse_submission(data):
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


def _defined_names(source):
    """Names a cell binds at top level (functions, classes, assignments): its content markers."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(re.findall(r"^(?:def|class)\s+(\w+)", source, flags=re.M))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def structure_notes(nb, ids, lesson):
    """Deleted and duplicated cells, compared with the generated exercise notebook.

    A cell of the exercise notebook is found by its id, or by its text, or (an
    answer cell, whose text the learner changed) by the names it defines: a
    notebook whose cells were pasted into a new file (new ids) matches too.

    Returns:
        tuple(list, list): indices (in the exercise notebook) of missing cells,
        and of cells that appear more than once in the submission.
    """
    reference = _reference_cells(lesson)
    if reference is None:
        return [], []
    id_counts = Counter(cell_id for cell_id in ids if cell_id)
    source_counts = Counter(cell.source.strip() for cell in nb.cells if cell.source.strip())
    defined = Counter()
    for cell in nb.cells:
        if cell.cell_type == "code":
            defined.update(_defined_names(cell.source))
    missing, duplicated = [], []
    for index, (cell_id, _, source, is_exercise, names) in enumerate(reference):
        by_source = 0 if is_exercise or not source else source_counts[source]
        by_marker = max((defined[name] for name in names), default=0) if is_exercise else 0
        if id_counts[cell_id] == 0 and by_source == 0 and by_marker == 0:
            missing.append(index)
        if id_counts[cell_id] > 1 or by_source > 1:
            duplicated.append(index)
    return missing, duplicated


# ---------------------------------------------------------------------------
# Building the job: the calls' inputs, from the secret.


def _rng(secret, exercise_id):
    """The generator of an exercise's hidden inputs: the same for every submission of a run."""
    import numpy as np

    digest = hashlib.sha256(f"{secret}\0{exercise_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@lru_cache(maxsize=8)
def _lesson_job(lesson, secret, timeout):
    """Per exercise of ``lesson``: its calls, their pickled inputs and what the sandbox needs to
    know to call the answer (built once per process)."""
    from mhacourse.grading import get_exercise, hidden
    from mhacourse.grading.registry import DEFAULT_TIME_LIMIT, calls_for
    from mhacourse.grading.sandbox import codec

    hidden.install()
    items = []
    for exercise in lesson_exercises(lesson):
        ex = get_exercise(exercise["id"])
        calls = calls_for(ex, _rng(secret, ex.id))
        pickled = []
        for call in calls:
            inputs = call.case.inputs()
            pickled.append(codec.pickle_inputs((inputs, ex.prepare(inputs))))
        items.append({"id": ex.id, "answer_name": ex.answer_name, "kind": ex.kind, "driver": ex.driver,
                      "calls": len(calls), "time_limit": float(min(DEFAULT_TIME_LIMIT, timeout)),
                      "record": _recorded_names(ex), "_inputs": pickled, "_calls": calls})
    return items


def _recorded_names(exercise):
    """Dotted names (``module.attribute``) the sandbox watches while ``exercise``'s answer runs."""
    from mhacourse.grading import policy

    names = []
    for pattern in exercise.forbidden or ():
        for module, attribute, _, _ in policy._expand(pattern).values():
            names.append(f"{module.__name__}.{attribute}")
    return sorted(set(names))


def hint_tiers(nb, exercises):
    """Per exercise id, the hint tier ``check`` showed the notebook (:func:`.hints.tiers_shown`; default 1)."""
    from mhacourse.grading import hints

    shown = hints.tiers_shown(cell.source for cell in nb.cells if cell.cell_type == "code") if nb is not None else {}
    return {exercise["id"]: shown.get(exercise["id"], 1) for exercise in exercises}


# ---------------------------------------------------------------------------
# Running a submission: the sandbox, reruns for what kills or hangs it.


def _run_sandboxed(code_cells, items, *, timeout, sandboxed, view, skip_cells, skip_exercises):
    """One run of the harness in a fresh sandbox; the records come back decoded."""
    from mhacourse.grading import isolation

    job = {"cells": code_cells, "skip_cells": sorted(skip_cells), "skip_exercises": sorted(skip_exercises),
           "timeout": float(timeout),
           "exercises": [{k: v for k, v in item.items() if not k.startswith("_")} for item in items]}
    active = [item for item in items if item["id"] not in skip_exercises]
    cells = [index for index, _ in code_cells if index not in skip_cells]
    per_exercise = max([item["calls"] * item["time_limit"] for item in active] or [0]) + 30
    deadlines = {"start": STARTUP_TIMEOUT, "cell": timeout + GRACE, None: 30 + GRACE, "exercise": per_exercise}
    # Absolute: nothing the sandbox sends can move it.
    deadlines["total"] = (STARTUP_TIMEOUT + len(cells) * (timeout + GRACE)
                          + sum(item["calls"] * item["time_limit"] + 30 for item in active) + 30)

    def feed(number, call):
        return items[number]["_inputs"][call]

    with tempfile.TemporaryDirectory(prefix="mhacourse-grade-") as folder:
        run = isolation.run_harness(job, view=view, feed=feed, folder=folder, sandboxed=sandboxed,
                                    deadlines=deadlines)
        records = {}
        for number, item in enumerate(items):
            if number in run.records:
                records[item["id"]] = _read_record(run.records[number], Path(folder) / f"ex{number}", item)
    return run, records


def _read_record(record, folder, item):
    """The harness's record for one exercise, values decoded; problems turned into messages here."""
    from mhacourse.grading import get_exercise
    from mhacourse.grading.registry import Outcome, error_descriptor
    from mhacourse.grading.sandbox import codec

    if not isinstance(record, dict) or record.get("exercise_id") != item["id"]:
        return {"harness_error": "the record is malformed"}
    exercise = get_exercise(item["id"])
    outcomes = []
    for position, plain in enumerate((record.get("outcomes") or [])[:item["calls"]]):
        if not isinstance(plain, dict):
            outcomes.append(Outcome(error=error_descriptor("missing")))
            continue
        error = plain.get("error")
        if error is not None:
            outcomes.append(Outcome(error=_clean_error(error, exercise, item["_calls"][position])))
            continue
        peak = plain.get("peak")
        try:
            outcomes.append(Outcome(value=codec.decode(plain.get("value"), folder),
                                    peak=int(peak) if isinstance(peak, int) and not isinstance(peak, bool) else None))
        except Exception:  # noqa: BLE001 - malformed data from the sandbox: an error, never a pass
            outcomes.append(Outcome(error=error_descriptor("exception", "OutputError",
                                                           "the output could not be read back")))
    problem = record.get("problem")
    return {
        "defined": record.get("defined") is True,
        "problem": _clean_error(problem, exercise, None) if problem is not None else None,
        "outcomes": outcomes,
        "recorded": [str(x)[:200] for x in (record.get("recorded") or [])][:50],
        "harness_error": str(record["harness_error"])[:300] if record.get("harness_error") else None,
    }


_KINDS = ("exception", "problem", "not_implemented", "timeout", "killed", "missing")


def _clean_error(error, exercise, call):
    """An error descriptor from the sandbox, reduced to short strings of known fields; a driver's
    problem becomes the exercise's message and hint (written here, never by the sandbox)."""
    from mhacourse.grading.registry import _descriptor, error_descriptor
    from mhacourse.grading.sandbox.drivers import Problem

    if not isinstance(error, dict) or error.get("kind") not in _KINDS:
        return error_descriptor("exception", "Error", "malformed error report")
    if error["kind"] == "problem":
        data = error.get("data") if isinstance(error.get("data"), dict) else {}
        try:
            inputs = call.case.inputs() if call is not None else None
            return _descriptor(exercise.problem(Problem(str(error.get("code"))[:80], **data), inputs))
        except Exception:  # noqa: BLE001 - malformed data: still an unusable answer
            return error_descriptor("problem", "AnswerProblem", "the answer could not be used")
    clean = {key: (str(error.get(key))[:1000] if error.get(key) is not None else None)
             for key in ("type", "message", "line")}
    clean.update(kind=error["kind"], hint_id=None, hint=None)
    return clean


def _run_with_reruns(code_cells, items, *, timeout, sandboxed, view, problems, notes, seen):
    """Run until the harness finishes, skipping each cell or answer that killed or hung it.

    ``seen`` gets what the harness reported about itself: ``"tampered"`` (what it relies on
    changed, or its events were forged) and ``"background"`` (threads still running after the cells).

    Returns:
        tuple(dict, dict, dict, dict): per code-cell index ``{"status",
        "error"}``, per exercise id the record, the exercises whose answers
        stopped the sandbox (id -> "killed"/"hung"), and the timing.
    """
    skip_cells, skip_exercises, cell_failures, killers = set(), set(), {}, {}
    timing = {"start": 0.0, "cells": 0.0, "checks": 0.0, "runs": 0}
    startup_failures = 0
    for _ in range(len(code_cells) + len(items) + 3):
        run, records = _run_sandboxed(code_cells, items, timeout=timeout, sandboxed=sandboxed,
                                      view=view, skip_cells=skip_cells, skip_exercises=skip_exercises)
        timing["runs"] += 1
        for key in ("start", "cells", "checks"):
            timing[key] += run.timing.get(key, 0.0)
        if run.how == "tampered":
            seen.setdefault("tampered", []).append(f"the sandbox's event channel carried {run.problem}")
            return {}, {}, killers, timing
        if run.finished:
            break
        if run.current is None:
            startup_failures += 1
            if startup_failures >= 2:
                problems.add("grader-error")
                notes.append(f"the sandbox stopped outside any cell ({run.how}) twice")
                return {}, {}, killers, timing
            continue
        kind, where = run.current
        if kind == "cell" and where not in skip_cells:
            skip_cells.add(where)
            cell_failures[where] = (
                {"status": "kernel-died", "error": "killed the kernel"} if run.how == "died" else
                {"status": "timeout", "error": f"could not be interrupted after {timeout:g} s; skipped in a rerun"})
        elif kind == "exercise" and where not in skip_exercises:
            skip_exercises.add(where)
            killers[where] = "killed" if run.how == "died" else "hung"
        else:
            problems.add("grader-error")
            notes.append(f"the sandbox stopped twice at {kind} {where}")
            return {}, {}, killers, timing
    else:
        problems.add("grader-error")
        notes.append("the sandbox never finished")
        return {}, {}, killers, timing
    cells = {}
    for event in run.events:
        if event.get("event") == "done" and event.get("tampered"):
            seen.setdefault("tampered", []).append(
                "the code the harness relies on was changed: " + ", ".join(str(n)[:80] for n in event["tampered"][:5]))
        if event.get("event") == "cells-done" and event.get("background"):
            seen["background"] = [str(n)[:80] for n in event["background"][:5]]
        if event.get("event") == "end" and event.get("kind") == "cell" and isinstance(event.get("where"), int):
            status = event.get("status") if event.get("status") in ("ok", "error", "timeout") else "error"
            cells[event["where"]] = {"status": status, "error": str(event.get("error"))[:500]
                                     if event.get("error") is not None else None}
    for index, _ in code_cells:
        cells.setdefault(index, {"status": "skipped" if index in skip_cells else "error",
                                 "error": None if index in skip_cells else "no report from the sandbox"})
    cells.update(cell_failures)
    return cells, records, killers, timing


def _case_rows(result, calls):
    """The report's per-case list; hidden cases named by number, without their inputs."""
    rows = []
    for case in result.cases:
        hidden = case.name.startswith("hidden case ") or any(c.hidden and c.name == case.name for c in calls)
        rows.append({"name": case.name, "status": case.status, "hidden": bool(hidden),
                     "message": case.message if not hidden else case.message.split("\n")[0][:120],
                     "hint_id": case.hint_id})
    return rows


def _judge_exercise(exercise, item, record, killer, tier, timeout, audit=None, tampered=()):
    """The row of one exercise: judged here from what the sandbox sent and what the source says.

    Args:
        audit (source_policy.Audit, optional): The policy decided from the submitted source.
        tampered (list[str]): What the harness reported about itself (the whole notebook's).
    """
    from mhacourse.grading import get_exercise, policy
    from mhacourse.grading.registry import Outcome, error_descriptor, judge

    row = {"id": exercise["id"], "answer_name": exercise["answer_name"], "max_points": exercise["max_points"],
           "defined": False, "passed": False, "points": 0.0, "report": "", "error": None, "tampered": [],
           "policy": [], "cases": [], "hint_id": None, "hint": None, "hint_tier": tier}
    ex = get_exercise(exercise["id"])
    calls = item["_calls"]
    found = list(audit.violations.get(ex.id, [])) if audit is not None else []
    copies = list(audit.copies.get(ex.id, [])) if audit is not None else []
    # What the source says holds whether or not the answer ran (a cell that imports the course's
    # implementation fails in the sandbox, where it does not exist).
    row["policy"] = [v for v in found if not _is_course_use(v)]
    row["tampered"] = list(tampered) + copies + [v for v in found if _is_course_use(v)]
    violations = found
    if killer is not None:
        row["defined"] = True
        row["error"] = ("the answer killed the kernel" if killer == "killed"
                        else f"the answer hung the kernel past {timeout:g} s")
        outcomes = [Outcome(error=error_descriptor("killed" if killer == "killed" else "timeout"))]
        result = judge(ex, calls, outcomes, time_limit=item["time_limit"])
    elif record is None:
        row["error"] = "no record came back from the sandbox"
        return row
    elif record.get("harness_error") and not record.get("outcomes"):
        row["defined"] = bool(record.get("defined"))
        row["error"] = f"the sandbox could not check it ({record['harness_error']})"
        return row
    elif not record["defined"]:
        return row
    else:
        row["defined"] = True
        recorded = policy.violations(ex, {}, _display_names(ex, record["recorded"]))
        violations = found + [v for v in recorded if v not in found]
        result = judge(ex, calls, record["outcomes"], problem=record["problem"], violations=violations + copies,
                       time_limit=item["time_limit"])
    row["policy"] = [v for v in violations if not _is_course_use(v)]
    row["tampered"] = list(tampered) + copies + [v for v in violations if _is_course_use(v)]
    row["passed"] = bool(result.passed) and not row["tampered"] and not row["policy"]
    row["points"] = float(exercise["max_points"]) if row["passed"] else 0.0
    try:
        from mhacourse.grading import hints

        result = hints.at_tier(result, ex, tier)  # the report at the tier the notebook asked for
    except (ImportError, AttributeError):
        pass
    row["report"] = result.report()
    row["cases"] = _case_rows(result, calls)
    row["hint_id"], row["hint"] = result.hint_id, result.hint
    return row


def _is_course_use(violation):
    return "course's" in violation or "grading" in violation


def _display_names(exercise, recorded):
    """The sandbox's dotted names (``mlx.core.softmax``) as the exercise's forbidden names (``mx.softmax``)."""
    from mhacourse.grading import policy

    names = {}
    for pattern in exercise.forbidden or ():
        for module, attribute, _, dotted in policy._expand(pattern).values():
            names[f"{module.__name__}.{attribute}"] = dotted
    return [names[name] for name in recorded if name in names]


@lru_cache(maxsize=None)
def _view(lesson):
    """The course view for ``lesson``: earlier lessons' modules, none holding this lesson's implementations."""
    from mhacourse.grading import get_exercise, policy, view

    excluded = set()
    for exercise in lesson_exercises(lesson):
        for obj, _ in policy._implementations(get_exercise(exercise["id"])).values():
            module = str(getattr(obj, "__module__", "") or "")
            if module.startswith("mhacourse.") and not module.startswith("mhacourse.grading"):
                excluded.add(module)
    return view.build_view(lesson, frozenset(excluded))


@lru_cache(maxsize=None)
def _policy_tables(lesson):
    """What each exercise of ``lesson`` forbids by name, and the course implementations it may not use."""
    from mhacourse.grading import get_exercise, policy

    forbidden, implementations = {}, {}
    for exercise in lesson_exercises(lesson):
        ex = get_exercise(exercise["id"])
        forbidden[ex.id] = policy.forbidden_names(ex)
        implementations[ex.id] = {key: (policy._qualname(obj), owner)
                                  for key, (obj, owner) in policy._implementations(ex).items()}
    return forbidden, implementations


@lru_cache(maxsize=None)
def _allowed_sources(lesson):
    """The code cells of ``lesson``'s exercise notebook and of its worked solutions (learners may reuse them)."""
    from mhacourse.grading import build

    try:
        paths = build.source_paths(build.project_root())
    except FileNotFoundError:
        return ()
    for path in paths:
        source = build.read_source(path)
        if str(source.metadata.get("mhacourse", {}).get("lesson")) == lesson:
            notebooks = build.build_notebook(source, path=path)
            return tuple(cell.source for nb in notebooks for cell in nb.cells if cell.cell_type == "code")
    return ()


def audit_source(nb, lesson):
    """The policy decided from the submission's source (:mod:`.source_policy`)."""
    from mhacourse.grading import source_policy

    forbidden, implementations = _policy_tables(lesson)
    cells = [(number, cell.source) for number, cell in enumerate(nb.cells, 1) if cell.cell_type == "code"]
    return source_policy.audit(cells, [(e["id"], e["answer_name"]) for e in lesson_exercises(lesson)],
                               forbidden=forbidden, implementations=implementations,
                               allowed_sources=_allowed_sources(lesson))


def grade_submission(path, *, timeout=60, lesson=None, secret=None, sandbox=True):
    """Grade one submitted notebook; never raises for a broken submission.

    Args:
        path (str or Path): the notebook.
        timeout (float): seconds allowed per cell. Default: ``60``.
        lesson (str, optional): grade as this lesson whatever the notebook says.
        secret (str, optional): the run's secret (hidden inputs); default: a fresh one.
        sandbox (bool): run the submission in bubblewrap (default); ``False``
            runs it unsandboxed and flags the row ``unsandboxed``.

    Returns:
        dict: the report (``file``, ``lesson``, ``status``, ``detail``,
        ``total``, ``max``, ``exercises``, ``cells``, ``flags``, ``review``,
        ``seconds``, ``timing``).

    Raises:
        RuntimeError: when ``sandbox`` is true and bwrap cannot run here.
    """
    from mhacourse.grading import isolation

    if sandbox and not isolation.bwrap_available():
        raise RuntimeError(isolation.NO_BWRAP)
    started = time.perf_counter()
    path = Path(path)
    secret = secret or secrets.token_hex(16)
    registry = _registry()
    report = {"file": str(path), "lesson": None, "status": "ok", "detail": "", "total": 0.0, "max": 0.0,
              "exercises": [], "cells": [], "flags": [], "review": []}
    timing = {"sandbox": round(isolation.sandbox_overhead(), 4) if sandbox else 0.0}
    problems, notes = set(), []
    nb = ids = None
    try:
        if path.is_symlink():
            raise _Refused("a symbolic link (to " + str(os.readlink(path))[:200] + "): submit the notebook itself")
        nb, ids = read_submission(path.read_bytes())
    except _Refused as error:
        problems.add("refused")
        notes.append(str(error))
    except (OSError, InvalidNotebook) as error:
        problems.add("invalid-notebook")
        notes.append(str(error))
    report["lesson"], lesson_notes = identify_lesson(nb, path, registry, lesson)
    notes += lesson_notes
    exercises = registry.get(report["lesson"], []) if report["lesson"] else []
    if not exercises and not problems & {"invalid-notebook", "refused"}:
        problems.add("unknown-lesson")
        notes.append("cannot tell which lesson this notebook belongs to")

    records, killers, items, audit, seen = {}, {}, [], None, {}
    if not problems:
        missing, duplicated = structure_notes(nb, ids, report["lesson"])
        if missing:
            problems.add("cells-missing")
            notes.append(f"exercise notebook cells missing: {missing}")
        if duplicated:
            problems.add("cells-duplicated")
            notes.append(f"exercise notebook cells duplicated: {duplicated}")
        auditing = time.perf_counter()
        audit = audit_source(nb, report["lesson"])
        timing["audit"] = round(time.perf_counter() - auditing, 4)
        items = _lesson_job(report["lesson"], secret, float(timeout))
        code_cells = [(index, cell.source) for index, cell in enumerate(nb.cells)
                      if cell.cell_type == "code" and cell.source.strip()]
        cells, records, killers, run_timing = _run_with_reruns(
            code_cells, items, timeout=timeout, sandboxed=sandbox, view=_view(report["lesson"]),
            problems=problems, notes=notes, seen=seen)
        timing.update({key: round(value, 4) for key, value in run_timing.items()})
        report["cells"] = [{"index": index, **cells[index]} for index in sorted(cells)]
        for index, cell in sorted(cells.items()):
            if cell["status"] in ("error", "timeout", "kernel-died"):
                problems.add(cell["status"])
                notes.append(f"cell {index + 1}: {cell['error']}")
        report["review"] = list(audit.review)
        if seen.get("background"):
            report["review"].append(f"threads still running after the last cell: {', '.join(seen['background'])}")
        if report["review"]:
            problems.add("needs-review")
            report["flags"].append("needs-review")
        if sandbox:
            report["flags"] += isolation.guarantees()["weaker"]
    if not sandbox:
        report["flags"] = report["flags"] + ["unsandboxed"]

    judging = time.perf_counter()
    tiers = hint_tiers(nb, exercises)
    by_id = {item["id"]: item for item in items}
    for exercise in exercises:
        if exercise["id"] not in by_id or (not records and exercise["id"] not in killers):
            row = _score(exercise, None)
            if seen.get("tampered"):
                row["tampered"] = list(seen["tampered"])
            report["exercises"].append(row)
            continue
        try:
            row = _judge_exercise(exercise, by_id[exercise["id"]], records.get(exercise["id"]),
                                  killers.get(exercise["id"]), tiers.get(exercise["id"], 1), timeout,
                                  audit=audit, tampered=seen.get("tampered", []))
        except Exception as error:  # noqa: BLE001 - a bug in a check: this exercise only
            row = _score(exercise, None)
            row["error"] = f"the grader failed to judge it: {type(error).__name__}: {error}"
        report["exercises"].append(row)
    timing["judge"] = round(time.perf_counter() - judging, 4)

    if seen.get("tampered"):
        problems.add("tampered")
        notes.append("; ".join(seen["tampered"]))
    for row in report["exercises"]:
        own = [t for t in row["tampered"] if t not in seen.get("tampered", [])]
        if own:
            problems.add("tampered")
            notes.append(f"{row['id']}: tampered ({'; '.join(own)})")
        elif row["policy"]:
            problems.add("forbidden")
            notes.append(f"{row['id']}: {'; '.join(row['policy'])}")
        if row["id"] in killers:
            problems.add("kernel-died" if killers[row["id"]] == "killed" else "timeout")
            notes.append(f"{row['id']}: {row['error']}")
        elif row["error"] and records:
            problems.add("grader-error")
            notes.append(f"{row['id']}: {row['error']}")
    if report["review"]:
        notes.append("needs review: " + "; ".join(report["review"][:5]))
    report["total"] = sum(row["points"] for row in report["exercises"])
    report["max"] = sum(row["max_points"] for row in report["exercises"])
    report["status"] = next(status for status in STATUSES if status in problems or status == "ok")
    report["detail"] = "; ".join(notes)
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["timing"] = timing
    return report


class _Refused(ValueError):
    """A submission the grader will not open (a symbolic link)."""


def _score(exercise, record):
    """A row with no points: the exercise was not checked (or ``record`` forged points, bounded here)."""
    row = {"id": exercise["id"], "answer_name": exercise["answer_name"], "max_points": exercise["max_points"],
           "defined": False, "passed": False, "points": 0.0, "report": "", "error": "not checked",
           "tampered": [], "policy": [], "cases": [], "hint_id": None, "hint": None, "hint_tier": 1}
    if record is None:
        return row
    row["error"] = record.get("error")
    return row


# ---------------------------------------------------------------------------
# Batches, reports and the command line.


def collect_submissions(paths):
    """Expand notebooks and folders of notebooks into a sorted list of files.

    Symbolic links are never followed: a linked notebook or folder is listed
    as it is, and grading refuses it (status ``refused``), so a link to another
    student's work or to the course's solutions earns nothing.

    Args:
        paths (list): notebooks (``.ipynb``) or folders searched recursively.

    Returns:
        list(Path): the notebooks (and links), checkpoints excluded.

    Raises:
        ValueError: for a path that does not exist or is not a notebook.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            inside = []
            for folder, dirs, files in os.walk(path, followlinks=False):
                dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints"]
                inside += [Path(folder) / d for d in dirs if (Path(folder) / d).is_symlink()]
                inside += [Path(folder) / f for f in files if f.endswith(".ipynb")]
            found += sorted(inside)
        elif path.is_symlink() or (path.is_file() and path.suffix == ".ipynb"):
            found.append(path)
        else:
            raise ValueError(f"SUBMISSION must be a .ipynb file or a folder, got {textio.printable(path)!r}")
    return found


def grade_many(paths, *, jobs=1, timeout=60, lesson=None, progress=None, secret=None, sandbox=True,
               on_report=None, done=None):
    """Grade several notebooks, ``jobs`` at a time, in the order given.

    Args:
        paths (list): the notebooks.
        jobs (int): worker processes. Default: ``1``.
        timeout (float): seconds per cell. Default: ``60``.
        lesson (str, optional): grade every notebook as this lesson.
        progress (bool, optional): show a progress bar; None shows it on a terminal.
        secret (str, optional): the run's secret; default: a fresh one for this call.
        sandbox (bool): see :func:`grade_submission`.
        on_report (callable, optional): ``(index, report)``, called as each
            notebook finishes (the command line writes results as they come).
        done (dict, optional): ``{index: report}`` already graded (``--resume``).

    Returns:
        list(dict): one report per notebook, in the order of ``paths``; on
        Ctrl-C, ``None`` for those not graded (then :class:`Interrupted` is raised
        with the list).

    Raises:
        ValueError: for bad arguments.
        RuntimeError: when ``sandbox`` is true and bwrap cannot run here.
    """
    from tqdm import tqdm

    from mhacourse.grading import isolation

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if sandbox and not isolation.bwrap_available():
        raise RuntimeError(isolation.NO_BWRAP)
    options = {"timeout": timeout, "lesson": lesson, "secret": secret or secrets.token_hex(16), "sandbox": sandbox}
    reports = [None] * len(paths)
    for index, report in (done or {}).items():
        reports[index] = report
    todo = [index for index in range(len(paths)) if reports[index] is None]

    def finished(index, report):
        reports[index] = report
        bar.update()
        if on_report is not None:
            on_report(index, report)

    bar = tqdm(total=len(todo), unit="nb", desc="grading", disable=(not sys.stderr.isatty()) if progress is None else not progress)
    try:
        with bar:
            if jobs == 1 or len(todo) <= 1:
                for index in todo:
                    finished(index, _grade_safely(paths[index], options))
            else:
                _grade_in_pool(paths, todo, options, jobs, finished)
    except KeyboardInterrupt:
        raise Interrupted(reports) from None
    return reports


class Interrupted(KeyboardInterrupt):
    """Grading was stopped (Ctrl-C); ``reports`` holds what finished (``None`` elsewhere)."""

    def __init__(self, reports):
        super().__init__("interrupted")
        self.reports = reports


def _grade_in_pool(paths, todo, options, jobs, finished):
    """Grade in worker processes; if a worker dies, the rest is graded again in a fresh pool."""
    broken = Counter()
    todo = list(todo)
    while todo:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_grade_safely, paths[index], options): index for index in todo}
            lost = []
            for future in as_completed(futures):
                index = futures[future]
                try:
                    report = future.result()
                except BrokenProcessPool as error:
                    broken[index] += 1
                    if broken[index] < 2:
                        lost.append(index)
                        continue
                    report = _failed_report(paths[index], error)
                except Exception as error:  # noqa: BLE001
                    report = _failed_report(paths[index], error)
                finished(index, report)
        todo = sorted(lost)


def _grade_safely(path, options):
    try:
        return grade_submission(path, **options)
    except Exception as error:  # noqa: BLE001
        return _failed_report(path, error)


def _failed_report(path, error):
    return {"file": str(path), "lesson": None, "status": "grader-error", "detail": f"{type(error).__name__}: {error}",
            "total": 0.0, "max": 0.0, "exercises": [], "cells": [], "flags": [], "seconds": 0.0, "timing": {}}


def _format_points(value):
    return f"{value:g}"


def csv_text(reports):
    """The CSV table: one row per submission, one points column per exercise.

    Columns: ``file, lesson, status, <exercise ids...>, total, max, flags,
    detail``. An exercise column is empty for submissions of other lessons.
    Every cell is written as text a spreadsheet does not run (see
    :func:`mhacourse.grading.textio.spreadsheet_cell`).
    """
    exercise_columns = []
    for report in reports:
        for row in report["exercises"]:
            if row["id"] not in exercise_columns:
                exercise_columns.append(row["id"])
    rows = [["file", "lesson", "status", *exercise_columns, "total", "max", "flags", "detail"]]
    for report in reports:
        points = {row["id"]: _format_points(row["points"]) for row in report["exercises"]}
        rows.append([report["file"], report["lesson"] or "", report["status"],
                     *(points.get(column, "") for column in exercise_columns),
                     _format_points(report["total"]), _format_points(report["max"]),
                     "; ".join(report["flags"]), report["detail"]])
    return textio.csv_text(rows)


def _json_names(reports):
    files = [Path(report["file"]).absolute() for report in reports]
    common = Path(os.path.commonpath([str(f.parent) for f in files])) if files else Path()
    names = {}
    for report, file in zip(reports, files):
        stem = textio.safe_name(str(file.relative_to(common).with_suffix("")))
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
            sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace"))
            sys.stdout.flush()
        else:
            textio.write_text(out, text)
    if json_dir is not None:
        json_dir = Path(json_dir)
        json_dir.mkdir(parents=True, exist_ok=True)
        names = _json_names(reports)
        for report in reports:
            textio.write_text(json_dir / names[id(report)], json.dumps(report, indent=1) + "\n")


def check_outputs(args):
    """Refuse, before any grading, an output the run could not write (a folder that does not exist,
    one without write permission, a file where a folder must go).

    Raises:
        ValueError: naming the option and the path.
    """
    files = [("--out", getattr(args, "out", None)), ("--canvas", getattr(args, "canvas", None))]
    folders = [("--json", getattr(args, "json_dir", None)), ("--feedback", getattr(args, "feedback", None))]
    gradescope = getattr(args, "gradescope", None)
    (files if gradescope and str(gradescope).endswith(".json") else folders).append(("--gradescope", gradescope))
    for option, value in files:
        if value in (None, "-"):
            continue
        path = Path(value)
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise ValueError(f"{option} {str(value)!r} is a folder; give a file")
        if not parent.is_dir():
            raise ValueError(f"{option} {str(value)!r}: the folder {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise ValueError(f"{option} {str(value)!r}: no permission to write there")
    for option, value in folders:
        if value is None:
            continue
        path = Path(value)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{option} {str(value)!r} is a file; give a folder")
        existing = next(p for p in (path, *path.absolute().parents) if p.exists())
        if not os.access(existing, os.W_OK):
            raise ValueError(f"{option} {str(value)!r}: no permission to write in {str(existing)!r}")


def configure(parser):
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                        help="submitted notebooks, or folders searched for *.ipynb")
    parser.add_argument("--out", default="grades.csv", help="CSV file to write ('-' for stdout; default: grades.csv)")
    parser.add_argument("--json", dest="json_dir", default=None, metavar="DIR",
                        help="also write one JSON report per submission into DIR")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded in parallel (default: 1)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds allowed per cell (default: 60)")
    parser.add_argument("--lesson", default=None, help="grade every submission as this lesson (e.g. 02)")
    parser.add_argument("--secret-file", default=None, metavar="FILE",
                        help=f"the run's secret (hidden case inputs), shared by shards; default: env "
                             f"{SECRET_ENV}, else a fresh random secret")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run submissions without bubblewrap, with your rights (every row is flagged)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--resume", action="store_true",
                        help="keep the reports OUT.journal.jsonl holds from an interrupted run (same notebooks, "
                             "same secret) and grade only the rest")
    from mhacourse.grading import classroom

    classroom.add_arguments(parser)


def read_secret(secret_file=None):
    """The run's secret: from ``secret_file``, else ``$MHACOURSE_GRADE_SECRET``, else ``None`` (fresh).

    Raises:
        ValueError: when the file cannot be read or is empty.
    """
    if secret_file is not None:
        try:
            text = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(f"--secret-file: cannot read {secret_file!r} ({error.strerror})") from None
        if not text:
            raise ValueError(f"--secret-file: {secret_file!r} is empty")
        return text
    return os.environ.get(SECRET_ENV) or None


def _digest(path):
    path = Path(path)
    try:
        data = os.readlink(path).encode("utf-8", "surrogateescape") if path.is_symlink() else path.read_bytes()
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest()


def _secret_hash(secret):
    return hashlib.sha256(f"mhacourse-secret\0{secret}".encode()).hexdigest()[:16]


class Journal:
    """Results written as each submission finishes: ``OUT.journal.jsonl`` beside the CSV.

    A crash or Ctrl-C keeps every finished report; ``--resume`` reads them back
    (those whose notebook and secret are unchanged) and grades only the rest.
    The journal's first line holds the run's secret (the file is mode 600), so
    a resumed run without ``--secret-file`` uses the same hidden inputs; it is
    removed once every output is written.
    """

    def __init__(self, out):
        self.path = Path(f"{out}.journal.jsonl")

    def _lines(self):
        if not self.path.is_file():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return entries

    def start(self, given, resume):
        """Open the journal; return the run's secret (``given``, else the journal's when resuming, else fresh)."""
        kept = next((e.get("secret") for e in self._lines() if isinstance(e, dict) and "secret" in e
                     and "report" not in e), None) if resume else None
        secret = given or kept or secrets.token_hex(16)
        if not (resume and kept == secret):
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(json.dumps({"format": "mhacourse-grade-journal", "secret": secret}) + "\n")
        return secret

    def load(self, paths, secret):
        """``{index: report}`` of the journal's reports that still hold for ``paths`` and ``secret``."""
        done, where = {}, {str(path): index for index, path in enumerate(paths)}
        for entry in self._lines():
            index = where.get(entry.get("file")) if isinstance(entry, dict) else None
            if (index is not None and entry.get("secret") == _secret_hash(secret)
                    and entry.get("digest") == _digest(paths[index]) and isinstance(entry.get("report"), dict)):
                done[index] = entry["report"]
        return done

    def add(self, path, report, secret):
        entry = {"file": str(path), "digest": _digest(path), "secret": _secret_hash(secret), "report": report}
        with open(self.path, "a", encoding="utf-8", errors="backslashreplace") as file:
            file.write(json.dumps(entry) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def finish(self):
        if self.path.exists():
            self.path.unlink()


def run(args):
    from mhacourse.grading import classroom

    if classroom.is_merge(args):
        return classroom.run_merge(args)
    journal = Journal(args.out) if args.out not in (None, "-") else None
    resume = bool(getattr(args, "resume", False))
    try:
        check_outputs(args)
        if resume and journal is None:
            raise ValueError("--resume needs --out FILE: the results so far are kept beside it")
        paths = collect_submissions(args.submissions)
        if not paths:
            raise ValueError(f"no notebooks found in {args.submissions}")
        paths = classroom.select(paths, args)
        secret = read_secret(getattr(args, "secret_file", None))
        if journal is not None:
            secret = journal.start(secret, resume)
            done = journal.load(paths, secret) if resume else {}
            if resume:
                print(f"resuming: {len(done)} of {len(paths)} already graded", file=sys.stderr)
        else:
            done = {}
        finished = dict(done)

        def on_report(index, report):
            finished[index] = report
            if journal is not None:
                journal.add(paths[index], report, secret)
                write_reports([finished[i] for i in sorted(finished)], out=args.out)

        if not getattr(args, "no_sandbox", False):
            from mhacourse.grading import isolation

            held = isolation.guarantees()
            print(f"sandbox: {held['sandbox'] or 'none'}; uid {held['uid']}; limits by {held['limits']}"
                  + (f"; every row is flagged {', '.join(held['weaker'])}" if held["weaker"] else ""), file=sys.stderr)
        try:
            reports = grade_many(paths, jobs=args.jobs, timeout=args.timeout, lesson=args.lesson,
                                 progress=False if args.no_progress else None, secret=secret,
                                 sandbox=not getattr(args, "no_sandbox", False), on_report=on_report, done=done)
        except Interrupted as stop:
            kept = [report for report in stop.reports if report is not None]
            write_reports(kept, out=args.out, json_dir=args.json_dir)
            print(f"interrupted: {len(kept)} of {len(paths)} graded and written"
                  + (f" to {args.out}; run the same command with --resume to grade the rest"
                     if journal is not None else ""), file=sys.stderr)
            return 130
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {textio.printable(error)}", file=sys.stderr)
        return 2
    write_reports(reports, out=args.out, json_dir=args.json_dir)
    statuses = Counter(report["status"] for report in reports)
    total, best = sum(r["total"] for r in reports), sum(r["max"] for r in reports)
    print(f"graded {len(reports)} notebook(s): " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
          + f"; {_format_points(total)} of {_format_points(best)} points in all", file=sys.stderr)
    if args.out not in (None, "-"):
        print(f"wrote {args.out}" + (f" and {args.json_dir}/" if args.json_dir else ""), file=sys.stderr)
    status = classroom.after_grading(reports, args)
    if journal is not None and status == 0:
        journal.finish()
    return status
