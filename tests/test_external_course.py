"""An instructor adds an exercise from a course folder of their own, outside the package: ``check()``,
``build-exercises``, the numbering and ``grade`` treat it like a built-in one."""

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

EXERCISES_PY = '''
"""A course folder's exercises: the same API as the lessons of mhacourse.grading.lessons."""

import mlx.core as mx
import numpy as np

from mhacourse.grading.exercise import Case, Exercise, Mistake


def _relu(x):
    return mx.maximum(x, 0)


def _fixed(array):
    return lambda: ((mx.array(array),), {})


def _hidden_relu(rng):
    return [Case("hidden", _fixed(rng.standard_normal((3, 5)).astype(np.float32)))]


EXERCISES = [
    Exercise(
        id="relu",
        lesson="10",
        title="A rectified linear unit",
        answer_name="relu",
        signature="relu(x)",
        reference=_relu,
        cases=[Case("a (2, 3) input", _fixed(np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], np.float32)))],
        mistakes=[Mistake("relu_abs", "ReLU zeroes the negatives: mx.maximum(x, 0), not mx.abs(x).",
                          lambda x: mx.abs(x), nudge="What does your answer do to a negative number?")],
        hidden_cases=_hidden_relu,
        forbidden=("nn.relu",),
    )
]
'''


def _source_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "mhacourse", "display_name": "mhacourse (MLX)", "language": "python"},
                   "mhacourse": {"lesson": "10", "exercises": ["relu"]}}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Exercises 10 — An instructor's own"),
        nbformat.v4.new_code_cell("import mlx.core as mx\n\nfrom mhacourse.grading import check"),
        nbformat.v4.new_markdown_cell("## Exercise 10.1 — A rectified linear unit\n\nWrite `relu(x)`."),
        nbformat.v4.new_code_cell("def relu(x):\n    ### BEGIN SOLUTION\n    return mx.maximum(x, 0)\n"
                                  "    ### END SOLUTION"),
        nbformat.v4.new_code_cell('check("relu", relu)'),
    ]
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"relu-{index}"
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    folder = tmp_path_factory.mktemp("my-course")
    (folder / "relu_exercises.py").write_text(textwrap.dedent(EXERCISES_PY), encoding="utf-8")
    (folder / "exercise_sources").mkdir()
    nbformat.write(_source_notebook(), folder / "exercise_sources" / "10_relu.ipynb")
    env = {**os.environ, "MHACOURSE_COURSE": str(folder)}
    done = subprocess.run([sys.executable, "-m", "mhacourse.cli", "build-exercises", "--root", str(folder)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return folder, env


def test_build_exercises_writes_the_student_and_solved_copies(course):
    folder, _ = course
    student = (folder / "exercises" / "10_relu.ipynb").read_text()
    solved = (folder / "solutions" / "10_relu.ipynb").read_text()
    assert "raise NotImplementedError()" in student and "mx.maximum(x, 0)" not in student
    assert "mx.maximum(x, 0)" in solved


def test_check_numbering_and_the_registry_see_it(course):
    folder, env = course
    probe = textwrap.dedent('''
        import json, mlx.core as mx
        from mhacourse.grading import check, exercise_ids
        from mhacourse.grading.registry import number_of
        right = check("relu", lambda x: mx.maximum(x, 0))
        wrong = check("relu", lambda x: mx.abs(x), hint=2)
        print(json.dumps({"last": exercise_ids()[-1], "number": number_of("relu"), "right": right.passed,
                          "wrong": [wrong.passed, wrong.hint_id, wrong.hint]}))
    ''')
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["last"] == "relu" and seen["number"] == "10.1" and seen["right"] is True
    assert seen["wrong"][:2] == [False, "relu_abs"] and "mx.maximum" in seen["wrong"][2]


def test_grade_scores_it_like_a_built_in_exercise(course, tmp_path):
    folder, _ = course
    env = {k: v for k, v in os.environ.items() if k != "MHACOURSE_COURSE"}
    out = tmp_path / "grades.csv"
    done = subprocess.run([sys.executable, "-m", "mhacourse.cli", "grade", str(folder / "solutions"),
                           str(folder / "exercises"), "--course", str(folder), "--out", str(out),
                           "--no-progress", "--no-summary", "--timeout", "30"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {Path(r["file"]).parent.name: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    assert (rows["solutions"]["status"], rows["solutions"]["relu"], rows["solutions"]["total"]) == ("ok", "1", "1")
    assert (rows["exercises"]["status"], rows["exercises"]["relu"], rows["exercises"]["total"]) == ("ok", "0", "0")
