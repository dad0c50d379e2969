"""Feedback a student can read: one self-contained HTML page per submission.

Per exercise the page shows the points, the visible cases (name, result,
message), the hint for the recognised mistake, and the rules an answer broke;
then the code cells that failed, with their error. Hidden cases are only
counted ("2 hidden checks failed"): their names, inputs and messages never
reach the page, even when a report carries them. Nothing says "passed" for an
exercise while one of its hidden cases failed.

The page has no script and loads nothing (a Content-Security-Policy forbids
it), and every text from the grader or the notebook is escaped. The same
per-exercise text feeds the Gradescope export (:mod:`exports`).
"""

import html
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from mhacourse.grading.textio import write_text

FAILED_CELL_STATUSES = ("error", "timeout", "kernel-died")
_CELL_WORDS = {"error": "raised an error", "timeout": "ran past the time limit", "kernel-died": "killed the kernel"}
# Statuses about the notebook file itself, whose ``detail`` a student may read.
_NOTEBOOK_PROBLEMS = {
    "invalid-notebook": "This file could not be read as a notebook",
    "unknown-lesson": ("The grader could not tell which lesson this notebook belongs to: keep the lesson's number "
                       "at the start of the file name (02_many_heads.ipynb), as in the exercise notebook"),
    "cells-missing": "Cells of the exercise notebook are missing",
    "cells-duplicated": "Cells of the exercise notebook appear twice",
}


@dataclass
class ExerciseFeedback:
    """What a student may see of one exercise.

    Attributes:
        id (str): The exercise id.
        title (str): Its title ("" when unknown).
        points (float): Points earned.
        max_points (float): Points possible.
        passed (bool): True only when every case passed, hidden ones included,
            and no rule was broken.
        verdict (str): One line: why the points are what they are.
        visible (list(dict)): The visible cases: ``name``, ``status``, ``message``.
        hidden_total (int): How many hidden cases ran.
        hidden_failed (int): How many of them failed.
        hint (str): What to fix ("" when no mistake was recognised).
        rules (list(str)): The rules of the course the answer broke.
        report (str): The checker's text report, for reports without cases.
    """

    id: str
    title: str
    points: float
    max_points: float
    passed: bool
    verdict: str
    visible: list = field(default_factory=list)
    hidden_total: int = 0
    hidden_failed: int = 0
    hint: str = ""
    rules: list = field(default_factory=list)
    report: str = ""


@cache
def _title(exercise_id):
    try:
        from mhacourse.grading import get_exercise

        return str(get_exercise(exercise_id).title)
    except Exception:  # an exercise this installation does not know
        return ""


def as_points(value):
    """A number of points from a report field; 0 for anything else (None, NaN, text)."""
    return float(value) if isinstance(value, (int, float)) and value == value else 0.0


def _plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def hidden_summary(total, failed):
    """``"2 hidden checks failed (of 3)"``, ``"3 hidden checks passed"``, or ``""``."""
    if not total:
        return ""
    if failed:
        return f"{_plural(failed, 'hidden check')} failed (of {total})"
    return f"{_plural(total, 'hidden check')} passed"


def exercise_feedback(row):
    """What a student may see of one exercise row of a grading report.

    Args:
        row (dict): an entry of a report's ``exercises``.

    Returns:
        ExerciseFeedback: hidden cases counted, never described.
    """
    cases = [case for case in row.get("cases") or [] if isinstance(case, dict)]
    hidden = [case for case in cases if case.get("hidden")]
    visible = [{"name": str(case.get("name") or "case"), "status": str(case.get("status") or "unknown"),
                "message": case_message(case)} for case in cases if not case.get("hidden")]
    hidden_failed = sum(case.get("status") != "passed" for case in hidden)
    visible_failed = sum(case["status"] != "passed" for case in visible)
    rules = list(dict.fromkeys(str(rule) for rule in [*(row.get("policy") or []), *(row.get("tampered") or [])]))
    points, max_points = as_points(row.get("points")), as_points(row.get("max_points"))
    passed = row.get("passed") is True and not hidden_failed and not visible_failed and not rules
    if passed:
        verdict = "passed"
    elif rules:
        verdict = "0 points: the answer breaks a rule of the course"
    elif row.get("error") and not cases:
        error = str(row["error"])
        verdict = ("not checked" if error == "not checked"
                   else f"{'not passed' if row.get('defined') else 'not checked'}: {error}")
    elif row.get("defined") is False:
        verdict = f"not answered: {row.get('answer_name') or 'the answer'} is not defined in the notebook"
    elif hidden_failed and not visible_failed and visible:
        verdict = f"the visible checks passed, but {_plural(hidden_failed, 'hidden check')} failed"
    else:
        verdict = "not passed"
    # The checker's own report only for rows without cases; with cases, the
    # visible ones say everything a student may read.
    report = "" if cases else str(row.get("report") or "")
    return ExerciseFeedback(
        id=str(row.get("id") or "?"), title=_title(str(row.get("id"))), points=points, max_points=max_points,
        passed=passed, verdict=verdict, visible=visible, hidden_total=len(hidden), hidden_failed=hidden_failed,
        hint="" if passed else str(row.get("hint") or ""), rules=rules, report=report,
    )


def case_message(case):
    """A visible case's message; a failed one also says what was expected and what came back
    (shape, first differing index and values) when the report has it."""
    message = str(case.get("message") or "")
    if case.get("status") == "passed" or case.get("hidden"):
        return message
    lines = [message] if message else []
    for key, label in (("expected", "expected"), ("got", "got")):
        if case.get(key) and f"{label}: " not in message:
            lines.append(f"{label}: {case[key]}")
    if case.get("difference"):
        lines.append(str(case["difference"]))
    return "\n".join(lines)


def failed_cells(report):
    """The code cells that failed: ``(number, words, error)``, numbered from 1 over every cell."""
    failed = []
    for cell in report.get("cells") or []:
        if isinstance(cell, dict) and cell.get("status") in FAILED_CELL_STATUSES:
            index = cell.get("index")
            number = index + 1 if isinstance(index, int) else "?"
            failed.append((number, _CELL_WORDS[cell["status"]], str(cell.get("error") or "")))
    return failed


# The part of a report's detail a student may read, per status: the note about the file itself
# (the rest of the detail is for the instructor: options, reviews, other checks).
_STUDENT_DETAIL = {
    "invalid-notebook": lambda note: not note.startswith(("metadata says", "needs review")),
    "cells-missing": lambda note: note.startswith("exercise notebook cells missing"),
    "cells-duplicated": lambda note: note.startswith("exercise notebook cells duplicated"),
}


def notebook_problem(report):
    """What is wrong with the notebook file itself, for the student ("" when nothing).

    Only statuses about the file (unreadable, unknown lesson, cells missing or
    doubled) come with the part of the grader's detail about that; nothing an
    instructor's option or review note says reaches the student.
    """
    if report.get("status") == "grader-error":
        return "Some checks could not run because of a problem in the grader; your instructor has the details."
    if report.get("status") == "refused":
        return "This file was not opened: submit the notebook itself, not a link to it."
    problem = _NOTEBOOK_PROBLEMS.get(report.get("status"))
    if problem is None:
        return "" if report.get("exercises") else "This notebook could not be graded."
    keep = _STUDENT_DETAIL.get(report.get("status"))
    notes = [note for note in str(report.get("detail") or "").split("; ") if note and keep and keep(note)]
    return f"{problem}: {'; '.join(notes)}" if notes else f"{problem}."


def exercise_text(item):
    """The plain text a student reads for one exercise (Gradescope's ``output``).

    Args:
        item (ExerciseFeedback): see :func:`exercise_feedback`.
    """
    lines = [f"{item.verdict} ({item.points:g}/{item.max_points:g} points)"]
    lines += [f"Rule broken: {rule}" for rule in item.rules]
    for case in item.visible:
        lines.append(f"  {'✓' if case['status'] == 'passed' else '✗'} {case['name']}: {case['status']}")
        lines += [f"      {line}" for line in case["message"].splitlines()]
    if item.hidden_total:
        lines.append(hidden_summary(item.hidden_total, item.hidden_failed))
    if item.report:
        lines.append(item.report)
    if item.hint:
        lines.append(f"Hint: {item.hint}")
    return "\n".join(lines)


def written_rows(report):
    """The report's written answers (graded by hand), as rows."""
    return [row for row in report.get("written") or [] if isinstance(row, dict)]


def grand_points(report):
    """``(points, max)``: the auto-graded points plus the written answers' (0 until graded by hand)."""
    return (as_points(report.get("total")) + as_points(report.get("written_total")),
            as_points(report.get("max")) + as_points(report.get("written_max")))


def written_text(row):
    """The plain text a student reads for one written answer."""
    points, best = as_points(row.get("points")), as_points(row.get("max_points"))
    if not row.get("graded"):
        lines = [f"graded by hand: not graded yet (0/{best:g} points)"]
    else:
        lines = [f"graded by hand: {points:g}/{best:g} points"]
    if not row.get("answered"):
        lines.append("No answer was found in the notebook.")
    if row.get("comment"):
        lines.append(f"Comment: {row['comment']}")
    return "\n".join(lines)


def _written_html(row):
    esc = html.escape
    graded = bool(row.get("graded"))
    full = graded and as_points(row.get("points")) == as_points(row.get("max_points"))
    title = f" — {esc(str(row.get('title')))}" if row.get("title") else ""
    points = f"{as_points(row.get('points')):g}" if graded else "0"
    kind = "passed" if full else "failed"
    parts = [f"<section class='exercise written {kind}' data-written='{esc(str(row.get('id')))}'>",
             f"<h2>{esc(str(row.get('id')))}{title}"
             f"<span class='points'>{points} / {as_points(row.get('max_points')):g} points</span></h2>",
             f"<p class='verdict'>{'graded by hand' if graded else 'graded by hand: not graded yet'}</p>"]
    if not row.get("answered"):
        parts.append("<p class='hidden'>No answer was found in the notebook.</p>")
    if row.get("comment"):
        parts.append(f"<p class='hint'><b>Comment:</b> {esc(str(row['comment']))}</p>")
    parts.append("</section>")
    return "\n".join(parts)


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; }
.total { font-size: 1.1rem; margin: .2rem 0 1.2rem; }
section { border-left: 4px solid #b42318; padding: .2rem 0 .4rem .8rem; margin: 1rem 0; }
section.passed { border-color: #1a7f37; }
h2 { font-size: 1.1rem; margin: .3rem 0; }
.points { float: right; font-weight: normal; }
.verdict { font-weight: 600; }
ul.cases { list-style: none; padding-left: .4rem; }
.passed-case::before { content: "✓ "; color: #1a7f37; }
.failed-case::before { content: "✗ "; color: #b42318; }
.hidden { color: #57606a; }
.hint { background: #fff8c5; padding: .3rem .5rem; }
.rule { color: #b42318; }
pre { white-space: pre-wrap; background: #f6f8fa; padding: .4rem; }
"""


def _exercise_html(item):
    esc = html.escape
    parts = [f"<section class='exercise {'passed' if item.passed else 'failed'}' data-exercise='{esc(item.id)}'>",
             f"<h2>{esc(item.id)}{(' — ' + esc(item.title)) if item.title else ''}"
             f"<span class='points'>{item.points:g} / {item.max_points:g} points</span></h2>",
             f"<p class='verdict'>{esc(item.verdict)}</p>"]
    parts += [f"<p class='rule'>Rule broken: {esc(rule)}</p>" for rule in item.rules]
    if item.visible:
        parts.append("<ul class='cases'>")
        for case in item.visible:
            kind = "passed-case" if case["status"] == "passed" else "failed-case"
            message = f"<pre>{esc(case['message'])}</pre>" if case["message"] else ""
            parts.append(f"<li class='{kind}'>{esc(case['name'])}: {esc(case['status'])}{message}</li>")
        parts.append("</ul>")
    if item.hidden_total:
        parts.append(f"<p class='hidden'>{esc(hidden_summary(item.hidden_total, item.hidden_failed))}</p>")
    if item.report:
        parts.append(f"<pre>{esc(item.report)}</pre>")
    if item.hint:
        parts.append(f"<p class='hint'><b>Hint:</b> {esc(item.hint)}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def feedback_html(report, *, name=None):
    """One submission's feedback page, self-contained.

    Args:
        report (dict): the grading report of one submission.
        name (str, optional): how to name the submission on the page.
            Default: the report's file name.

    Returns:
        str: the HTML document.
    """
    esc = html.escape
    name = name or Path(str(report.get("file") or "submission")).name
    items = [exercise_feedback(row) for row in report.get("exercises") or [] if isinstance(row, dict)]
    cells = failed_cells(report)
    total, best = grand_points(report)
    body = [f"<h1>Feedback: {esc(name)}</h1>"]
    lesson = f"lesson {esc(str(report['lesson']))}: " if report.get("lesson") else ""
    body.append(f"<p class='total'>{lesson}<b>{total:g} / {best:g} points</b></p>")
    problem = notebook_problem(report)
    if problem:
        body.append(f"<p class='verdict problem'>{esc(problem)}</p>")
    elif items and all(item.passed for item in items) and not cells:
        body.append("<p class='verdict'>Every check passed, hidden checks included.</p>")
    body += [_exercise_html(item) for item in items]
    body += [_written_html(row) for row in written_rows(report)]
    if cells:
        body.append("<h2>Code cells that failed</h2><ul class='cells'>")
        body += [f"<li>Cell {number} {esc(words)}<pre>{esc(error)}</pre></li>" for number, words, error in cells]
        body.append("</ul>")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>Feedback: {esc(name)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_feedback(reports, names, folder):
    """Write one feedback page per report into ``folder``.

    Args:
        reports (list(dict)): grading reports.
        names (list(str)): the file name (without ``.html``) for each report.
        folder (str or Path): created if needed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for report, name in zip(reports, names):
        write_text(folder / f"{name}.html", feedback_html(report))
