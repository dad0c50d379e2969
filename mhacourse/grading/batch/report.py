"""One submission's report: read, audit, run, judge each exercise, and the status.

:func:`grade_submission` is the whole path of one notebook, top-down:
:mod:`.submissions` reads it, :mod:`.job` builds what the sandbox gets and
audits the source, :mod:`.run` runs the sandbox, and the rows are judged here.
"""

import os
import secrets
import time
from pathlib import Path
from typing import Any, TypedDict

from .job import _lesson_job, _registry, _view, audit_source, hint_tiers
from .run import _run_with_reruns
from .submissions import InvalidNotebook, _Refused, identify_lesson, read_submission, structure_notes


class ExerciseRow(TypedDict):
    """One exercise of a report (the JSON report's ``exercises``; one column of grades.csv)."""

    id: str
    answer_name: str
    max_points: float
    defined: bool  # the notebook defines the answer
    passed: bool
    points: float
    report: str  # the check's report, as the student reads it
    error: str | None  # why it was not checked, or what stopped it
    tampered: list[str]  # the course's code used or copied, or the harness changed
    policy: list[str]  # the exercise's rules broken
    cases: list[dict[str, Any]]  # name, status, hidden, message, hint_id (hidden inputs never shown)
    hint_id: str | None
    hint: str | None
    hint_tier: int


class Report(TypedDict, total=False):
    """One submission's report: the JSON report, one row of grades.csv, what every export reads."""

    file: str
    lesson: str | None
    status: str  # the most serious of STATUSES
    detail: str  # where, in words (cells numbered from 1)
    total: float
    max: float
    exercises: list[ExerciseRow]
    cells: list[dict[str, Any]]  # index, status, error
    flags: list[str]
    review: list[str]  # what needs a person, with cell and line
    seconds: float
    timing: dict[str, float]


def new_report(path: Path | str, status: str = "ok", detail: str = "") -> Report:
    """A report with nothing checked yet: every report starts here."""
    return Report(file=str(path), lesson=None, status=status, detail=detail, total=0.0, max=0.0, exercises=[],
                  cells=[], flags=[], review=[])


def new_row(exercise: dict[str, Any], tier: int = 1, error: str | None = None) -> ExerciseRow:
    """An exercise row with no points yet: every row starts here."""
    return ExerciseRow(id=exercise["id"], answer_name=exercise["answer_name"], max_points=exercise["max_points"],
                       defined=False, passed=False, points=0.0, report="", error=error, tampered=[], policy=[],
                       cases=[], hint_id=None, hint=None, hint_tier=tier)

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
    from mhacourse.grading.batch import isolation

    if sandbox and not isolation.bwrap_available():
        raise RuntimeError(isolation.NO_BWRAP)
    started = time.perf_counter()
    path = Path(path)
    secret = secret or secrets.token_hex(16)
    registry = _registry()
    report = new_report(path)
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
        if missing:  # numbered from 1 over every cell, as everywhere in reports and feedback
            problems.add("cells-missing")
            notes.append(f"exercise notebook cells missing: {_cell_list(missing)}")
        if duplicated:
            problems.add("cells-duplicated")
            notes.append(f"exercise notebook cells duplicated: {_cell_list(duplicated)}")
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
            row = _score(exercise)
            if seen.get("tampered"):
                row["tampered"] = list(seen["tampered"])
            report["exercises"].append(row)
            continue
        try:
            row = _judge_exercise(exercise, by_id[exercise["id"]], records.get(exercise["id"]),
                                  killers.get(exercise["id"]), tiers.get(exercise["id"], 1), timeout,
                                  audit=audit, tampered=seen.get("tampered", []))
        except Exception as error:  # noqa: BLE001 - a bug in a check: this exercise only
            row = _score(exercise)
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
    from mhacourse.grading import written

    # Written answers, graded by hand: collected, never scored here (0 of N until merge-manual).
    report["written"] = written.answer_rows(nb, ids, report["lesson"])
    written.summarise(report)
    report["total"] = sum(row["points"] for row in report["exercises"])
    report["max"] = sum(row["max_points"] for row in report["exercises"])
    report["status"] = next(status for status in STATUSES if status in problems or status == "ok")
    report["detail"] = "; ".join(notes)
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["timing"] = timing
    return report


def _cell_list(indices):
    """``[0, 4]`` → ``"cells 1, 5"``: cells numbered from 1 over every cell, markdown included."""
    return ("cell " if len(indices) == 1 else "cells ") + ", ".join(str(index + 1) for index in indices)


def _judge_exercise(exercise, item, record, killer, tier, timeout, audit=None, tampered=()):
    """The row of one exercise: judged here from what the sandbox sent and what the source says.

    Args:
        audit (source_policy.Audit, optional): The policy decided from the submitted source.
        tampered (list[str]): What the harness reported about itself (the whole notebook's).
    """
    from mhacourse.grading import get_exercise, policy
    from mhacourse.grading.exercise import Outcome, error_descriptor
    from mhacourse.grading.judge import judge

    row = new_row(exercise, tier)
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


def _case_rows(result, calls):
    """The report's per-case list; hidden cases named by number, without their inputs."""
    rows = []
    for case in result.cases:
        hidden = case.name.startswith("hidden case ") or any(c.hidden and c.name == case.name for c in calls)
        row = {"name": case.name, "status": case.status, "hidden": bool(hidden),
               "message": case.message if not hidden else case.message.split("\n")[0][:120],
               "hint_id": case.hint_id}
        if not hidden and case.status != "passed":  # expected vs got: shape, first differing index and values
            row["expected"], row["got"] = str(case.expected or "")[:300], str(case.got or "")[:300]
            different = [c for c in case.comparisons or [] if not getattr(c, "close", True)]
            if different and getattr(different[0], "first", None) is not None:
                first = different[0]
                row["difference"] = (f"{first.path}: first difference at index {first.first}: got "
                                     f"{first.first_got:.6g}, expected {first.first_expected:.6g} "
                                     f"(largest difference {first.max_abs_diff:.3g})")
        rows.append(row)
    return rows


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


def _score(exercise):
    """A row with no points: the exercise was not checked."""
    return new_row(exercise, error="not checked")


def _failed_report(path, error):
    report = new_report(path, "grader-error", f"{type(error).__name__}: {error}")
    report.update(seconds=0.0, timing={})
    return report
