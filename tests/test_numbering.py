"""Exercise numbers come from one place (the exercise notebooks' headings) and agree everywhere."""

import json
import re
from pathlib import Path

import pytest

from mhacourse.grading import exercise_ids, get_exercise
from mhacourse.grading.numbering import HEADING
from mhacourse.grading.registry import number_of
from mhacourse.grading.registry import numbers as exercise_numbers

REPO = Path(__file__).resolve().parents[1]
CITED = re.compile(r"(?:\b[Ee]xercises?\s+|\()(\d{2})\.(\d+)\b")
STOP = {"with", "every", "from", "their", "heads", "layer", "predict", "shapes", "which", "attention", "masks"}


def _markdown(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", sorted((REPO / "exercise_sources").glob("*.ipynb")), ids=lambda p: p.name)
def test_headings_count_one_two_three_in_notebook_order(path):
    found = [(m.group(1), int(m.group(2))) for text in _markdown(path) for m in HEADING.finditer(text)]
    assert found, path
    assert [lesson for lesson, _ in found] == [path.name[:2]] * len(found)
    assert [n for _, n in found] == list(range(1, len(found) + 1))


def test_every_exercise_has_its_own_number_and_the_registry_lists_them_in_that_order():
    numbers = exercise_numbers()
    assert set(numbers) == set(exercise_ids())
    assert len(set(numbers.values())) == len(numbers)
    order = [tuple(int(p) for p in numbers[i].split(".")) for i in exercise_ids()]
    assert order == sorted(order)
    assert all(numbers[i].startswith(get_exercise(i).lesson + ".") for i in exercise_ids())


def _words(exercise_id):
    exercise = get_exercise(exercise_id)
    words = {exercise_id, exercise.answer_name}
    words |= {w for w in re.findall(r"[a-z_]{5,}", exercise.title.lower()) if w not in STOP}
    return {w.lower() for w in words if len(w) >= 4}


def _citations(paths):
    by_number = {number: exercise_id for exercise_id, number in exercise_numbers().items()}
    for path in paths:
        for text in _markdown(path):
            if HEADING.match(text):
                text = text.split("\n", 1)[-1]  # the heading defines the number; the rest may cite
            matches = list(CITED.finditer(text))
            for k, match in enumerate(matches):
                number = f"{match.group(1)}.{match.group(2)}"
                # what the citation is about: the words since the previous citation (at most 100 characters
                # before), up to its closing parenthesis or 60 characters after, before the next citation
                start = max(matches[k - 1].end() if k else 0, match.start() - 100)
                end = min(matches[k + 1].start() if k + 1 < len(matches) else len(text), match.end() + 60)
                yield path.name, number, by_number.get(number), text[start:end]


def test_lessons_and_exercise_notebooks_cite_numbers_that_mean_what_they_say():
    paths = sorted((REPO / "notebooks").glob("*.ipynb")) + sorted((REPO / "exercise_sources").glob("*.ipynb"))
    wrong = []
    lessons = {get_exercise(i).lesson for i in exercise_ids()}
    for name, number, exercise_id, context in _citations(paths):
        if number[:2] not in lessons:
            continue  # another book's section (d2l 11.1), not an exercise of this course
        if exercise_id is None:
            wrong.append((name, number, "no such exercise", context))
        elif not any(word in context.lower() for word in _words(exercise_id)):
            wrong.append((name, number, exercise_id, context))
    assert not wrong, "\n".join(map(str, wrong))


def test_gradescope_test_numbers_are_the_notebooks_numbers():
    from mhacourse.grading.classroom.exports import gradescope_results

    rows = [{"id": i, "points": 0.0, "max_points": float(get_exercise(i).points), "passed": False, "cases": [],
             "report": "", "hint": None, "hint_id": None, "error": None, "policy": [], "tampered": []}
            for i in exercise_ids() if get_exercise(i).lesson == "02"]
    results = gradescope_results({"lesson": "02", "total": 0.0, "max": 5.0, "exercises": rows, "cells": [],
                                  "status": "ok", "detail": ""})
    assert [t["number"] for t in results["tests"]] == [number_of(r["id"]) for r in rows] == \
        ["02.1", "02.2", "02.3", "02.4", "02.5"]
