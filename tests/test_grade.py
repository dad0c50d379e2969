"""The batch grader: exact scores for broken and tampered submissions, reports, CLI.

One batch (``--jobs 2``, sandboxed) grades every committed solution (full
marks), every untouched exercise (zero) and one fixture per broken case and
tampering attempt, made at test time from the committed notebooks by
``tests/fixtures/make_submissions.py``. Set ``MHACOURSE_GRADE_ALL=1`` to grade
all 31 fixtures here too (``benchmarks/bench_grade.py`` always does). The
attacks of a hostile student are in ``tests/test_attacks.py``.
"""

import argparse
import csv
import hashlib
import importlib.util
import io
import json
import os
from pathlib import Path

import pytest

from mhacourse.grading import get_exercise
from mhacourse.grading.batch import cli, job, outputs, pool, submissions
from mhacourse.grading.batch import isolation as sandbox

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 10  # seconds per cell: the infinite loop costs this much

spec = importlib.util.spec_from_file_location("make_submissions", REPO / "tests" / "fixtures" / "make_submissions.py")
make_submissions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_submissions)

# One fixture per broken case and per tampering attempt (the rest: MHACOURSE_GRADE_ALL=1).
CASES = [
    "03_partial",
    "05_invalid_json",
    "06_borrowed_answers",
    "07_not_a_notebook",
    "09_deleted_answer",
    "10_duplicated_answer",
    "13_kernel_dies_early",
    "14_infinite_loop",
    "16_exception_cell",
    "22_patches_grading_check",
    "23_patches_passed",
    "24_fake_grading_module",
    "25_answer_patches_grader",
    "26_metadata_exercises_removed",
    "31_wraps_reference",
    "homework",
]


def digest(paths):
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


pytestmark = pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap cannot run here")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    expected = make_submissions.make_submissions(folder)
    if os.environ.get("MHACOURSE_GRADE_ALL") != "1":
        expected = {name: want for name, want in expected.items() if Path(name).stem.split("__")[-1] in CASES}
    fixtures = [folder / name for name in sorted(expected)]
    course = submissions.collect_submissions([REPO / "solutions", REPO / "exercises"])
    before = digest(fixtures + course)
    reports = pool.grade_many(fixtures + course, jobs=2, timeout=TIMEOUT, progress=False)
    return {
        "expected": expected,
        "reports": {Path(r["file"]).name if Path(r["file"]).parent == folder else
                    str(Path(r["file"]).relative_to(REPO)): r for r in reports},
        "before": before,
        "after": digest(fixtures + course),
    }


def test_every_case_is_graded(batch):
    assert len(batch["expected"]) >= len(CASES)
    assert set(batch["expected"]) <= set(batch["reports"])


def test_fixture_scores_are_exact(batch):
    wrong = {}
    for name, want in batch["expected"].items():
        report = batch["reports"][name]
        points = {row["id"]: row["points"] for row in report["exercises"]}
        want_points = {row["id"]: row["max_points"] if row["id"] in want["solved"] else 0.0
                       for row in report["exercises"]}
        total = sum(get_exercise(ex_id).points for ex_id in want["solved"])
        if report["status"] != want["status"] or points != want_points or report["total"] != total:
            wrong[name] = (report["status"], points, report["detail"])
    assert not wrong, json.dumps(wrong, indent=1)


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_solutions_earn_every_point_and_untouched_exercises_none(batch, folder):
    reports = [r for name, r in batch["reports"].items() if name.startswith(folder + "/")]
    assert len(reports) == len(list((REPO / folder).glob("*.ipynb"))) >= 7
    for report in reports:
        assert report["status"] == "ok", (report["file"], report["detail"])
        assert report["exercises"], report["file"]
        for row in report["exercises"]:
            want = row["max_points"] if folder == "solutions" else 0.0
            assert (row["points"], row["passed"]) == (want, folder == "solutions"), (report["file"], row)


def test_scores_come_from_the_registry_not_the_notebook_metadata(batch):
    name = next(n for n in batch["expected"] if n.endswith("26_metadata_exercises_removed.ipynb"))
    report = batch["reports"][name]
    lesson = report["lesson"]
    assert [row["id"] for row in report["exercises"]] == [ex["id"] for ex in job.lesson_exercises(lesson)]
    assert report["max"] == sum(ex["max_points"] for ex in job.lesson_exercises(lesson)) > 0


def test_broken_cells_are_reported_per_cell(batch):
    reports = batch["reports"]
    loop = next(r for n, r in reports.items() if n.endswith("14_infinite_loop.ipynb"))
    assert [c["status"] for c in loop["cells"]].count("timeout") == 1
    died = next(r for n, r in reports.items() if n.endswith("13_kernel_dies_early.ipynb"))
    assert [c["status"] for c in died["cells"]].count("kernel-died") == 1
    assert "killed the kernel" in died["detail"]


def test_tampering_code_is_flagged_for_review(batch):
    flags = {n.split("__")[-1]: r["flags"] for n, r in batch["reports"].items() if "__" in n}
    review = {n.split("__")[-1]: " ".join(r["review"]) for n, r in batch["reports"].items() if "__" in n}
    assert "needs-review" in flags["22_patches_grading_check.ipynb"]
    assert "changes the course's code (mhacourse.grading.check)" in review["22_patches_grading_check.ipynb"]
    assert "sys.modules" in review["24_fake_grading_module.ipynb"]
    assert flags["03_partial.ipynb"] == [] and review["03_partial.ipynb"] == ""


def test_grading_never_modifies_a_submission(batch):
    assert batch["before"] == batch["after"]


def test_csv_has_one_row_per_submission_with_points_columns(batch):
    reports = list(batch["reports"].values())
    rows = list(csv.DictReader(io.StringIO(outputs.csv_text(reports))))
    assert len(rows) == len(reports)
    header = list(rows[0])
    assert header[:3] == ["file", "lesson", "status"] and header[-4:] == ["total", "max", "flags", "detail"]
    for row, report in zip(rows, reports):
        assert row["status"] == report["status"]
        assert float(row["total"]) == report["total"]
        for exercise in report["exercises"]:
            assert float(row[exercise["id"]]) == exercise["points"]


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="mhacourse grade")
    cli.configure(parser)
    return cli.run(parser.parse_args(argv))


def test_cli_writes_csv_and_json_and_goes_on_after_broken_files(tmp_path, capsys):
    submissions = tmp_path / "in"
    (submissions / "alice").mkdir(parents=True)
    (submissions / "alice" / "02_many_heads.ipynb").write_text("{not json")
    empty = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    (submissions / "bob.ipynb").write_text(json.dumps(empty))
    out, reports = tmp_path / "grades.csv", tmp_path / "json"
    assert run_cli([str(submissions), "--out", str(out), "--json", str(reports), "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(Path(r["file"]).name, r["lesson"], r["status"]) for r in rows] == [
        ("02_many_heads.ipynb", "02", "invalid-notebook"),
        ("bob.ipynb", "", "unknown-lesson"),
    ]
    assert rows[0]["split_heads"] == "0" and float(rows[0]["max"]) == sum(
        ex["max_points"] for ex in job.lesson_exercises("02"))
    written = sorted(p.name for p in reports.iterdir())
    assert written == ["alice__02_many_heads.json", "bob.json", "class-summary.json"]
    report = json.loads((reports / "alice__02_many_heads.json").read_text())
    assert report["status"] == "invalid-notebook" and "invalid JSON" in report["detail"]
    assert "graded 2 notebook(s)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, words",
    [(["missing.ipynb"], "SUBMISSION must be"), (["--jobs", "0", "x"], "jobs must be"),
     (["--timeout", "0", "x"], "timeout must be")],
)
def test_cli_rejects_bad_arguments(tmp_path, capsys, monkeypatch, argv, words):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "homework.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert run_cli(argv) == 2
    assert words in capsys.readouterr().err


def test_lesson_comes_from_metadata_then_file_name():
    known = {"01", "02"}
    nb = make_submissions.nbformat.v4.new_notebook()
    assert submissions.identify_lesson(nb, Path("02_x.ipynb"), known) == ("02", [])
    assert submissions.identify_lesson(nb, Path("alice.ipynb"), known) == (None, [])
    nb.metadata["mhacourse"] = {"lesson": "01"}
    lesson, notes = submissions.identify_lesson(nb, Path("02_x.ipynb"), known)
    assert lesson == "01" and "file name 02" in notes[0]
    assert submissions.identify_lesson(nb, Path("02_x.ipynb"), known, forced="02") == ("02", [])


def test_reports_carry_cases_hints_and_timing_but_the_csv_no_timing(batch):
    report = batch["reports"]["solutions/01_attention_one_head.ipynb"]
    for row in report["exercises"]:
        assert row["cases"] and all(set(case) == {"name", "status", "hidden", "message", "hint_id"}
                                    for case in row["cases"])
        assert row["hint_tier"] >= 1 and row["policy"] == [] and row["tampered"] == []
    assert set(report["timing"]) >= {"sandbox", "start", "cells", "checks", "judge", "runs"}
    text = outputs.csv_text([report])
    assert str(report["seconds"]) not in text and "timing" not in text


def test_hint_tier_is_the_largest_tier_check_showed_the_notebook():
    nb = make_submissions.nbformat.v4.new_notebook(cells=[
        make_submissions.nbformat.v4.new_code_cell('check("softmax", softmax, hint=2)'),
        make_submissions.nbformat.v4.new_code_cell("check('softmax', softmax, hint=3)\ncheck('split_heads', f)"),
        make_submissions.nbformat.v4.new_code_cell("check('merge_heads', merge_heads, hint=3)"),
    ])
    tiers = job.hint_tiers(nb, [{"id": "softmax"}, {"id": "split_heads"}, {"id": "merge_heads"}, {"id": "rope"}])
    assert tiers == {"softmax": 2, "split_heads": 1, "merge_heads": 1, "rope": 1}  # hint=3 shows tier 1


def test_pasted_notebook_with_new_cell_ids_has_no_missing_cells():
    name, exercise, solution, answers, exercises = make_submissions._lesson_files(REPO, None)
    lesson = str(solution.metadata["mhacourse"]["lesson"])
    ids = [f"new-{i}" for i in range(len(solution.cells))]
    assert submissions.structure_notes(solution, ids, lesson) == ([], [])
    gone = make_submissions.copy.deepcopy(solution)
    del gone.cells[answers[-1]]
    missing, _ = submissions.structure_notes(gone, ids[:-1], lesson)
    assert missing


def test_the_console_script_grades_in_the_sandbox_on_the_preloaded_blas(tmp_path):
    """``mhacourse grade`` restarts itself on the optimised BLAS (LD_PRELOAD): the sandbox must still start."""
    import subprocess
    import sys

    script = Path(sys.prefix) / "bin" / "mhacourse"
    done = subprocess.run([str(script), "grade", str(REPO / "solutions" / "02_many_heads.ipynb"), "--out",
                           str(tmp_path / "g.csv"), "--no-progress", "--no-summary"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "MHACOURSE_BLAS": "auto"})
    assert done.returncode == 0, done.stderr
    row = next(csv.DictReader(io.StringIO((tmp_path / "g.csv").read_text())))
    assert (row["status"], row["total"]) == ("ok", row["max"]), row
