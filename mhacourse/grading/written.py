"""Written answers, graded by hand: free-response questions in the exercise notebooks.

**In an exercise source** a written question is a markdown cell holding one
block between marker lines, like a coded exercise's solution::

    ### BEGIN WRITTEN ANSWER why_scale (2 points)
    The scores' variance grows with D_h; dividing by √D_h keeps it near 1 ...
    ### END WRITTEN ANSWER

The id (letters, digits, ``_``) names the question across the course; the
points are what a grader may award. The question itself is the text above:
the ``## Exercise NN.M — title`` heading before the block (its number, as for
coded exercises) and the markdown between that heading and the block.

``build-exercises`` replaces the block by :data:`TAG` (a comment line the
student keeps) and, in ``exercises/``, the placeholder :data:`PLACEHOLDER`; in
``solutions/``, by the tag and the model answer. The grader finds a student's
answer by the tag (or, were the tag deleted, by the cell id of the exercise
notebook) and puts it in the report's ``written`` rows, unscored: a person
scores it (:mod:`mhacourse.grading.classroom.manual`).

**In a report**: ``written`` (one row per question: ``id``, ``number``,
``title``, ``max_points``, ``answer``, ``answered``, ``graded``, ``points``,
``comment``), ``written_total`` (the points merged so far) and
``written_max``. ``total`` and ``max`` stay the auto-graded points, so a
written question changes no auto-graded score; the LMS exports and feedback
pages show their sum with the written points.
"""

import json
import re
from functools import cache
from pathlib import Path

__all__ = ["BEGIN", "END", "TAG", "PLACEHOLDER", "split_written", "questions", "answer_rows", "summarise"]

BEGIN = "### BEGIN WRITTEN ANSWER"
END = "### END WRITTEN ANSWER"
PLACEHOLDER = "YOUR ANSWER HERE"
TAG = "<!-- WRITTEN ANSWER {id} ({points:g} points): write your answer below this line and keep this line -->"

_BEGIN = re.compile(r"^[ \t]*### BEGIN WRITTEN ANSWER[ \t]+(?P<id>[A-Za-z_]\w*)[ \t]+\((?P<points>\d+(?:\.\d+)?)"
                    r"[ \t]+points?\)[ \t]*$")
_END = re.compile(r"^[ \t]*### END WRITTEN ANSWER[ \t]*$")
_ANY = re.compile(r"(BEGIN|END)\s+WRITTEN\s+ANSWER")
_TAG = re.compile(r"<!--\s*WRITTEN ANSWER\s+(?P<id>[A-Za-z_]\w*)\b[^\n]*?-->")
_HEADING = re.compile(r"^#+\s*Exercise\s+(\d{2})\.(\d+)\s*(?:[—–:-]\s*(.*))?$", flags=re.M)


class WrittenMarkerError(ValueError):
    """A written-answer marker is missing, misplaced or malformed.

    Attributes:
        line (int): 1-based line in the cell; ``reason``: what is wrong.
    """

    def __init__(self, where, line, reason):
        self.line, self.reason = line, reason
        super().__init__(f"{where}, line {line}: {reason}")


def split_written(source, *, where="<source>"):
    """One markdown cell's source → ``(exercise text, solution text, [(id, points, model answer)])``.

    Raises:
        WrittenMarkerError: an END without BEGIN, a BEGIN without END or without ``id (N points)``,
            a nested BEGIN, or an empty model answer.
    """
    exercise, solution, found = [], [], []
    opened, block = None, []
    for number, line in enumerate(source.split("\n"), start=1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if opened is not None:
                raise WrittenMarkerError(where, number, f"nested '{BEGIN}' (line {opened[0]} is open)")
            opened, block = (number, begin["id"], float(begin["points"])), []
        elif end:
            if opened is None:
                raise WrittenMarkerError(where, number, f"'{END}' without a matching '{BEGIN}'")
            model = "\n".join(block).strip()
            if not model:
                raise WrittenMarkerError(where, opened[0], "empty model answer")
            tag = TAG.format(id=opened[1], points=opened[2])
            exercise += [tag, PLACEHOLDER]
            solution += [tag, *block]
            found.append((opened[1], opened[2], model))
            opened = None
        elif _ANY.search(line):
            raise WrittenMarkerError(where, number, f"malformed marker {line.strip()!r}: write "
                                     f"'{BEGIN} <id> (N points)' or '{END}' alone on its line")
        elif opened is not None:
            block.append(line)
        else:
            exercise.append(line)
            solution.append(line)
    if opened is not None:
        raise WrittenMarkerError(where, opened[0], f"'{BEGIN}' without a matching '{END}'")
    return "\n".join(exercise), "\n".join(solution), found


def _cells(path):
    cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    for index, cell in enumerate(cells):
        source = cell.get("source", "")
        yield index, cell.get("cell_type"), cell.get("id"), "".join(source) if isinstance(source, list) else source


def questions_in(path):
    """The written questions of one exercise source: a list of dicts (``id``, ``lesson``, ``number``,
    ``title``, ``question``, ``max_points``, ``model``, ``cell_id``), in notebook order."""
    lesson = Path(path).name[:2]
    found, number, title, asked = [], None, "", []
    for index, kind, cell_id, source in _cells(path):
        if kind != "markdown":
            continue
        heading = list(_HEADING.finditer(source))
        if heading:
            last = heading[-1]
            number = f"{last.group(1)}.{last.group(2)}"
            title = re.sub(r"\s*\(written[^)]*\)\s*$", "", (last.group(3) or "").strip())
            asked = [source[last.end():].strip()]
        if BEGIN not in source:
            if not heading:
                asked.append(source.strip())
            continue
        _, _, blocks = split_written(source, where=f"{Path(path).name}: cell {index}")
        before = source.split(BEGIN, 1)[0]
        if heading:
            before = before[before.rfind(heading[-1].group(0)) + len(heading[-1].group(0)):]
            asked = []
        for written_id, points, model in blocks:
            found.append({"id": written_id, "lesson": lesson, "number": number, "title": title,
                          "question": "\n\n".join(part for part in [*asked, before.strip()] if part),
                          "max_points": points, "model": model, "cell_id": cell_id})
        asked = []
    return found


@cache
def _all_questions():
    from mhacourse.grading.numbering import source_folders
    from mhacourse.grading.registry import course_folders

    by_lesson = {}
    for folder in source_folders(course_folders()):
        for path in sorted(folder.glob("*.ipynb")):
            for question in questions_in(path):
                by_lesson.setdefault(question["lesson"], {}).setdefault(question["id"], question)
    return {lesson: list(found.values()) for lesson, found in by_lesson.items()}


def questions(lesson):
    """The written questions of ``lesson`` (from the exercise sources), in notebook order."""
    return list(_all_questions().get(str(lesson), [])) if lesson else []


def _answer_text(text, written_id=None):
    lines = [line for line in text.split("\n") if not _TAG.search(line)]
    answer = "\n".join(lines).strip()
    return "" if answer == PLACEHOLDER else answer


def answer_rows(nb, ids, lesson):
    """The report's ``written`` rows of one submission: each question's answer, unscored.

    Args:
        nb (NotebookNode or None): the submission.
        ids (list or None): its raw cell ids (see :func:`.batch.submissions.read_submission`).
        lesson (str or None): its lesson.
    """
    rows = []
    for question in questions(lesson):
        answer = None
        if nb is not None:
            tagged = [cell.source for cell in nb.cells if cell.cell_type == "markdown"
                      and any(m["id"] == question["id"] for m in _TAG.finditer(cell.source))]
            by_id = [cell.source for cell, cell_id in zip(nb.cells, ids or []) if cell.cell_type == "markdown"
                     and cell_id and cell_id == question["cell_id"]]
            for text in tagged or by_id:
                answer = _answer_text(text)
                break
        rows.append({"id": question["id"], "number": question["number"], "title": question["title"],
                     "max_points": question["max_points"], "answer": answer or "", "answered": bool(answer),
                     "graded": False, "points": 0.0, "comment": ""})
    return rows


def summarise(report):
    """Set ``written_total`` and ``written_max`` from the report's ``written`` rows; return the report."""
    rows = [row for row in report.get("written") or [] if isinstance(row, dict)]
    report["written_total"] = float(sum(row["points"] for row in rows if row.get("graded")))
    report["written_max"] = float(sum(row["max_points"] for row in rows))
    return report
