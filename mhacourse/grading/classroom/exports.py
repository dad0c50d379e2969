"""Grades for learning-management systems: Gradescope and Canvas.

**Student ids.** A report carries its student (``report["student"]``, from
:mod:`.identity`: Gradescope's metadata, Canvas's download names, a roster).
Reports without one (older reports, merged parts of an older run) fall back to
the key (the path relative to the SUBMISSION folder): ``--student-id REGEX``'s
group ``id``; the top folder; a Canvas download name's user id; the file name.

**Gradescope** (``--gradescope DIR``): ``DIR/<name>/results.json`` per
submission, in the autograder format Gradescope documents
(gradescope-autograders.readthedocs.io, "Autograder Specifications"): the
total as ``score``, one test per exercise with ``name``, ``number``,
``score``, ``max_score``, ``status`` and ``output`` (the text of the feedback
page: hidden cases counted, never described), all ``visible``. Inside
Gradescope's own container, ``--gradescope /autograder/results/results.json``
(a path ending in ``.json``) writes that one file for a single submission.

**Canvas** (``--canvas FILE``): a gradebook CSV as Canvas exports it and
imports it back: ``Student, ID, SIS User ID, SIS Login ID, Section``, then one
column per lesson (``Lesson 02``) or, with ``--canvas-columns exercise``, per
exercise (``Lesson 02: split_heads``), then a ``Points Possible`` row. Canvas
matches a row to a student by any one of ``ID``, ``SIS User ID`` or
``SIS Login ID``: for a report without an identity, ids that are all digits
go to ``ID``, others to ``SIS Login ID``; ``--canvas-id-column`` chooses.
A report with an identity fills the columns it knows. A notebook that could
not be graded (:data:`UNGRADED`) or matched to no student leaves its cell
empty, never 0.
A column whose name matches no assignment creates one on import. Written
answers (graded by hand) count in the lesson's column, 0 until
``merge-manual`` scores them, and their points in its ``Points Possible``. One row per
student; a student with two notebooks of one lesson keeps the better score.
"""

import json
import re
from pathlib import Path, PurePosixPath

from mhacourse.grading.classroom.feedback import (
    as_points,
    exercise_feedback,
    exercise_text,
    failed_cells,
    grand_points,
    notebook_problem,
    written_rows,
    written_text,
)
from mhacourse.grading.textio import csv_text, safe_name, write_text

CANVAS_FIXED_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_ID_COLUMNS = ("ID", "SIS User ID", "SIS Login ID")
_CANVAS_DOWNLOAD = re.compile(r"^[^_]+_(?:LATE_)?(\d+)_\d+_")


def student_id(key, pattern=None):
    """The student id of the submission with this key (rules in the module docstring).

    Args:
        key (str): the submission's path relative to its SUBMISSION folder.
        pattern (str or re.Pattern, optional): ``--student-id``.

    Raises:
        ValueError: when ``pattern`` is given and does not match the key.
    """
    path = PurePosixPath(key)
    if pattern is not None:
        match = re.search(pattern, key)
        if match is None:
            raise ValueError(f"--student-id {getattr(pattern, 'pattern', pattern)!r} does not match "
                             f"the submission {key!r}")
        groups = match.groupdict()
        return groups.get("id") or (match.group(1) if match.groups() else match.group(0))
    if len(path.parts) > 1:
        return path.parts[0]
    canvas = _CANVAS_DOWNLOAD.match(path.name)
    return canvas.group(1) if canvas else path.stem


def output_names(keys):
    """A distinct file name (no suffix) per key: ``alice/02.ipynb`` → ``alice__02``; a key that
    names a place outside (an absolute path, a parent folder) still gives a name inside the output folder."""
    names, taken = [], set()
    for key in keys:
        stem = safe_name(str(PurePosixPath(key).with_suffix("")))
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        names.append(name)
    return names


VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
# A notebook with one of these statuses was not graded: its Canvas cell stays empty (never 0).
UNGRADED = ("invalid-notebook", "refused", "unknown-lesson", "grader-error")


def _who(report):
    who = report.get("student")
    return who if isinstance(who, dict) else None


def gradescope_results(report, *, visibility="visible", late_policy="none"):
    """One submission's Gradescope ``results.json``, as a dict.

    Args:
        report (dict): the grading report.
        visibility (str): ``hidden``, ``after_due_date``, ``after_published`` or ``visible``
            (the whole result's and each test's).
        late_policy (str): see :func:`.identity.late_points`; the deduction is applied to ``score``.
    """
    from mhacourse.grading.classroom.identity import late_points
    from mhacourse.grading.registry import number_of

    if visibility not in VISIBILITIES:
        raise ValueError(f"--visibility must be one of {', '.join(VISIBILITIES)}; got {visibility!r}")
    tests = []
    for position, row in enumerate(report.get("exercises") or [], start=1):
        item = exercise_feedback(row)
        tests.append({
            "name": item.id + (f": {item.title}" if item.title else ""),
            "number": number_of(item.id) or f"{report.get('lesson') or '?'}.{position}",
            "score": item.points, "max_score": item.max_points,
            "status": "passed" if item.passed else "failed",
            "output": exercise_text(item), "output_format": "text", "visibility": visibility,
        })
    for row in written_rows(report):  # graded by hand: 0 until merge-manual
        test = {"name": str(row.get("id")) + (f": {row['title']}" if row.get("title") else ""),
                "number": str(row.get("number") or f"{report.get('lesson') or '?'}.{len(tests) + 1}"),
                "score": as_points(row.get("points")) if row.get("graded") else 0.0,
                "max_score": as_points(row.get("max_points")), "output": written_text(row),
                "output_format": "text", "visibility": visibility}
        if row.get("graded"):
            test["status"] = "passed" if test["score"] == test["max_score"] else "failed"
        tests.append(test)
    total, best = grand_points(report)
    score = late_points(total, _who(report), late_policy)
    lines = [f"{total:g} / {best:g} points"]
    if score != total:
        lines.append(f"Submitted late: {score:g} points after the late policy ({late_policy}).")
    if notebook_problem(report):
        lines.append(notebook_problem(report))
    lines += [f"Cell {number} {words}: {error}" for number, words, error in failed_cells(report)]
    results = {"score": score, "output": "\n".join(lines), "output_format": "text", "visibility": visibility,
               "stdout_visibility": "hidden", "tests": tests}
    if isinstance(report.get("seconds"), (int, float)):
        results["execution_time"] = report["seconds"]
    flags = [str(flag) for flag in report.get("flags") or []]
    if flags:  # for the instructor (Gradescope keeps extra_data out of the student's view)
        results["extra_data"] = {"flags": flags}
    return results


def write_gradescope(reports, names, target, *, visibility="visible", late_policy="none"):
    """Write ``target/<name>/results.json`` per report, or the one file ``target`` (``*.json``).

    Raises:
        ValueError: for a ``*.json`` target with other than one submission.
    """
    target = Path(target)
    if target.suffix == ".json":
        if len(reports) != 1:
            raise ValueError(f"--gradescope {str(target)!r} (a .json file) needs exactly one submission, "
                             f"got {len(reports)}; give a folder instead")
        files = [target]
    else:
        files = [target / name / "results.json" for name in names]
    for report, file in zip(reports, files):
        file.parent.mkdir(parents=True, exist_ok=True)
        results = gradescope_results(report, visibility=visibility, late_policy=late_policy)
        write_text(file, json.dumps(results, indent=1) + "\n")


def _canvas_columns(report, by):
    """``{column: (points or None, max_points)}`` for one report; points are None for a notebook
    that could not be graded (its cell stays empty)."""
    lesson = report.get("lesson")
    rows = [row for row in report.get("exercises") or [] if isinstance(row, dict)]
    if not lesson or not rows:
        return {}
    ungraded = report.get("status") in UNGRADED
    if by == "lesson":  # the written answers' points too (0 until graded by hand)
        total, best = grand_points(report)
        return {f"Lesson {lesson}": (None if ungraded else total, best)}
    columns = {f"Lesson {lesson}: {row.get('id')}": (None if ungraded else as_points(row.get("points")),
                                                     as_points(row.get("max_points"))) for row in rows}
    columns.update({f"Lesson {lesson}: {row.get('id')}": (
        None if ungraded else (as_points(row.get("points")) if row.get("graded") else 0.0),
        as_points(row.get("max_points"))) for row in written_rows(report)})
    return columns


def _late_columns(columns, report, policy):
    from mhacourse.grading.classroom.identity import late_points

    return {column: (None if points is None else late_points(points, _who(report), policy), best)
            for column, (points, best) in columns.items()}


def canvas_csv(reports, keys, *, by="lesson", id_column=None, pattern=None, late_policy="none"):
    """The Canvas gradebook CSV of a class (columns in the module docstring).

    Args:
        reports (list(dict)): grading reports; those carrying ``student`` (an identity from
            :mod:`.identity`) fill ``Student, ID, SIS User ID, SIS Login ID, Section`` from it.
        keys (list(str)): each report's key (see :func:`student_id`).
        by (str): ``"lesson"`` or ``"exercise"``: one column per lesson or per exercise.
        id_column (str, optional): ``"ID"``, ``"SIS User ID"`` or ``"SIS Login ID"`` for a report
            without an identity; by default ``ID`` when every student id is all digits, else ``SIS Login ID``.
        pattern (str, optional): ``--student-id``.
        late_policy (str): ``none``, ``zero`` or ``percent:N`` (:func:`.identity.late_points`).

    Returns:
        str: the CSV text. A notebook that could not be graded, and an unmatched one, has an
        empty cell (never 0); an unmatched one is a row of its own named ``UNMATCHED <key>``
        with no id, which Canvas lists as a student it could not match.
    """
    if by not in ("lesson", "exercise"):
        raise ValueError(f"--canvas-columns must be 'lesson' or 'exercise', got {by!r}")
    if id_column is not None and id_column not in CANVAS_ID_COLUMNS:
        raise ValueError(f"--canvas-id-column must be one of {', '.join(CANVAS_ID_COLUMNS)}; got {id_column!r}")
    students, fixed_of, columns, legacy = {}, {}, {}, set()
    for report, key in zip(reports, keys):
        who = _who(report)
        if pattern is not None or who is None or who.get("source") == "folder":
            student = student_id(key, pattern) if pattern is not None or who is None else who["student"]
            legacy.add(student)
            fixed = {"Student": student}
        elif not who.get("matched"):
            student = f"UNMATCHED {key}"
            fixed = {"Student": student}
        else:
            student = who.get("student") or key
            fixed = {"Student": who.get("name") or student, "ID": who.get("canvas_id") or "",
                     "SIS User ID": who.get("sid") or "", "SIS Login ID": who.get("login") or "",
                     "Section": who.get("section") or ""}
        fixed_of.setdefault(student, fixed)
        scores = students.setdefault(student, {})
        for column, (points, max_points) in _late_columns(_canvas_columns(report, by), report, late_policy).items():
            columns.setdefault(column, max_points)
            if points is None or (who is not None and not who.get("matched") and pattern is None):
                continue
            scores[column] = max(points, scores.get(column, points))
    if id_column is None:
        id_column = "ID" if legacy and all(s.isdigit() for s in legacy) else "SIS Login ID"
    names = sorted(columns)
    rows = [[*CANVAS_FIXED_COLUMNS, *names],
            ["    Points Possible", "", "", "", "", *(f"{columns[name]:g}" for name in names)]]
    for student in sorted(students):
        fixed = {column: "" for column in CANVAS_FIXED_COLUMNS}
        fixed.update(fixed_of[student])
        if student in legacy:
            fixed[id_column] = student
        scores = students[student]
        rows.append([*fixed.values(), *(f"{scores[name]:g}" if name in scores else "" for name in names)])
    return csv_text(rows)
