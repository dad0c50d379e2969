"""Written answers, graded by hand: markers, the per-question pages, the scores CSV and ``merge-manual``.

The marker tests run on strings. The class tests grade three real notebooks of
the fixtures' lesson once (the model answer, the untouched placeholder, and an
answer of carol's own holding HTML), then fold a filled-in scores CSV back in.
"""

import copy
import csv
import importlib.util
import io
import json
from pathlib import Path

import jsonschema
import nbformat
import pytest

from mhacourse.cli import main
from mhacourse.grading import written
from mhacourse.grading.authoring import build
from mhacourse.grading.batch import update
from mhacourse.grading.classroom import manual

FIXTURES = Path(__file__).parent / "fixtures" / "make_submissions.py"
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "gradescope_results.schema.json").read_text())
CAROL = "Scores grow like sqrt(D_h) <script>alert(1)</script> & the softmax saturates."


# ---------------------------------------------------------------------------
# Markers


def test_markers_give_a_placeholder_to_students_and_the_model_answer_to_solutions():
    source = "**Your answer:**\n### BEGIN WRITTEN ANSWER why (1.5 points)\nBecause.\n### END WRITTEN ANSWER\n"
    exercise, solution, found = written.split_written(source)
    assert found == [("why", 1.5, "Because.")]
    assert written.PLACEHOLDER in exercise and "Because." not in exercise
    assert "Because." in solution and "BEGIN" not in solution and "BEGIN" not in exercise
    tag = written.TAG.format(id="why", points=1.5)
    assert tag in exercise and tag in solution and exercise.startswith("**Your answer:**")


@pytest.mark.parametrize("source, words", [
    ("### BEGIN WRITTEN ANSWER why (2 points)\ntext", "without a matching"),
    ("text\n### END WRITTEN ANSWER", "without a matching"),
    ("### BEGIN WRITTEN ANSWER why\ntext\n### END WRITTEN ANSWER", "malformed marker"),
    ("### BEGIN WRITTEN ANSWER a (2 points)\n\n### END WRITTEN ANSWER", "empty model answer"),
])
def test_bad_written_markers_stop_the_build_naming_the_cell_and_line(source, words):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\ny = 2\n"
                                                                   "### END SOLUTION"),
                                         nbformat.v4.new_markdown_cell(source)])
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"c{index}"
    with pytest.raises(build.MarkerError, match=words) as raised:
        build.build_notebook(nb, path="x.ipynb")
    assert raised.value.cell_index == 1 and raised.value.line is not None


def test_every_lesson_asks_a_written_question_and_the_solutions_hold_the_model_answer():
    root = Path(__file__).resolve().parents[1]
    for path in build.source_paths(root):
        questions = written.questions(path.name[:2])
        assert questions, path.name
        exercise = (root / "exercises" / path.name).read_text(encoding="utf-8")
        solution = (root / "solutions" / path.name).read_text(encoding="utf-8")
        for question in questions:
            assert question["number"].startswith(path.name[:2] + ".") and question["max_points"] > 0
            first_line = json.dumps(question["model"].split("\n")[0])[1:-1]
            assert first_line in solution and first_line not in exercise


# ---------------------------------------------------------------------------
# A graded class


def _maker():
    spec = importlib.util.spec_from_file_location("make_submissions", FIXTURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _carol(exercise_path, answer):
    nb = json.loads(Path(exercise_path).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and written.PLACEHOLDER in text:
            cell["source"] = text.replace(written.PLACEHOLDER, answer)
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("manual")
    made = root / "made"
    names = _maker().make_submissions(made)
    name = {case: next(n for n in names if n.endswith(f"__{case}.ipynb")) for case in ("01_full", "02_untouched")}
    for student in ("alice", "bob", "carol"):
        (root / "class" / student).mkdir(parents=True)
    (root / "class" / "alice" / name["01_full"]).write_bytes((made / name["01_full"]).read_bytes())
    (root / "class" / "bob" / name["02_untouched"]).write_bytes((made / name["02_untouched"]).read_bytes())
    carol = _carol(made / name["02_untouched"], CAROL)
    (root / "class" / "carol" / name["02_untouched"]).write_text(json.dumps(carol), encoding="utf-8")
    (root / "secret").write_text("manual-secret-" + "2" * 32)
    results = root / "results"
    results.mkdir()
    assert main(["grade", str(root / "class"), "--jobs", "2", "--no-progress", "--no-summary", "--secret-file",
                 str(root / "secret"), "--out", str(results / "grades.csv"), "--json", str(results / "json"),
                 "--canvas", str(results / "canvas.csv"), "--gradescope", str(results / "gradescope"),
                 "--feedback", str(results / "feedback")]) == 0
    manifest = json.loads((results / update.MANIFEST_NAME).read_text())
    codes = {entry["key"].split("/")[0]: entry["code"] for entry in manifest["submissions"]}
    lesson = json.loads((made / "expected.json").read_text())["lesson"]
    return {"root": root, "results": results, "codes": codes, "questions": written.questions(lesson)}


def reports(results):
    return {p.name.split("__")[0]: json.loads(p.read_text()) for p in (results / "json").glob("*__*.json")}


def rows(path):
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


def test_reports_list_written_answers_as_graded_by_hand_with_no_points(graded):
    by_student = reports(graded["results"])
    question = graded["questions"][0]
    for student, report in by_student.items():
        row = next(r for r in report["written"] if r["id"] == question["id"])
        assert (row["graded"], row["points"], row["max_points"]) == (False, 0.0, question["max_points"])
        assert report["written_total"] == 0 and report["written_max"] == sum(q["max_points"]
                                                                             for q in graded["questions"])
        assert row["answered"] == (student != "bob")
    assert by_student["alice"]["total"] == by_student["alice"]["max"]  # auto-graded points untouched
    assert by_student["carol"]["written"][0]["answer"] == CAROL
    assert question["model"] in by_student["alice"]["written"][0]["answer"]
    gradescope = json.loads(next((graded["results"] / "gradescope").glob("alice*/results.json")).read_text())
    jsonschema.validate(gradescope, SCHEMA)
    test = next(t for t in gradescope["tests"] if t["name"].startswith(question["id"]))
    assert test["number"] == question["number"] and test["score"] == 0
    assert "graded by hand: not graded yet (0/2 points)" in test["output"]
    page = next((graded["results"] / "feedback").glob("alice*")).read_text()
    assert "graded by hand: not graded yet" in page


def test_one_anonymous_page_per_question_holds_every_answer(graded):
    folder = graded["results"] / "manual"
    pages = sorted(folder.glob("*.html"))
    assert [p.name for p in pages] == [f"{q['number']}_{q['id']}.html" for q in graded["questions"]]
    page = pages[0].read_text()
    for student, code in graded["codes"].items():
        assert code in page
        assert student not in page  # anonymised: codes only
    assert graded["questions"][0]["model"].split("\n")[0] in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; the softmax" in page and "<script>" not in page
    assert page.count("class='answer'") == 3 and "(no answer)" in page
    scores = rows(folder / manual.SCORES_NAME)
    assert list(scores[0]) == list(manual.SCORE_COLUMNS)
    assert sorted(r["student code"] for r in scores) == sorted(graded["codes"].values())
    assert {r["key"] for r in scores} == {graded["questions"][0]["id"]}
    assert all(r["score"] == "" and r["max points"] == "2" for r in scores)


def test_show_names_puts_the_names_on_the_pages(graded, tmp_path):
    results = update.load(graded["results"])
    manual.write_manual(results.reports, results.keys, results.codes, tmp_path, show_names=True)
    page = next(tmp_path.glob("*.html")).read_text()
    assert all(f"{code} — {student}" in page for student, code in graded["codes"].items())
    assert {r["student"] for r in rows(tmp_path / manual.SCORES_NAME)} == set(graded["codes"])


def test_student_codes_are_stable_and_distinct():
    keys = ["alice/01.ipynb", "bob/01.ipynb", "alice/02.ipynb"]
    codes = manual.student_codes(keys, "hash")
    assert codes == manual.student_codes(keys, "hash") and len(set(codes)) == 3
    assert codes[2] == codes[0] + "-2" and manual.student_codes(keys, "other")[0] != codes[0]


def _scores(graded, path, changes):
    """Write a filled-in copy of the run's scores.csv: ``{student: (score, comment)}``."""
    lines = rows(graded["results"] / "manual" / manual.SCORES_NAME)
    by_code = {code: student for student, code in graded["codes"].items()}
    for line in lines:
        line["score"], line["comment"] = changes.get(by_code.get(line["student code"]), ("", ""))
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(manual.SCORE_COLUMNS))
        writer.writeheader()
        writer.writerows(lines)
    return path


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change, words", [
    ({"alice": ("3", "")}, "line 2: score 3 is outside [0, 2]"),
    ({"alice": ("-1", "")}, "outside [0, 2]"),
    ({"alice": ("two", "")}, "score 'two' is not a number"),
    ({"alice": ("nan", "")}, "outside [0, 2]"),
])
def test_merge_manual_refuses_bad_scores_naming_the_line_and_writes_nothing(graded, tmp_path, capsys, change, words):
    before = snapshot(graded["results"])
    # alice's line is the first when the codes sort her first; find it to name the right line
    path = _scores(graded, tmp_path / "scores.csv", change)
    line = 2 + [r["student code"] for r in rows(path)].index(graded["codes"]["alice"])
    assert main(["grade", "merge-manual", str(path), "--update", str(graded["results"])]) == 2
    err = capsys.readouterr().err
    assert words.replace("line 2", f"line {line}") in err and "nothing merged" in err
    assert snapshot(graded["results"]) == before


def test_merge_manual_refuses_unknown_rows(graded, tmp_path, capsys):
    before = snapshot(graded["results"])
    path = tmp_path / "scores.csv"
    path.write_text("student code,key,question,max points,score,comment\n"
                    f"SNOBODY00,why_scale,,2,1,\n{graded['codes']['alice']},no_such_question,,2,1,\n")
    assert main(["grade", "merge-manual", str(path), "--update", str(graded["results"])]) == 2
    err = capsys.readouterr().err
    assert "line 2: unknown student code 'SNOBODY00'" in err and "line 3: student" in err
    assert "no written question 'no_such_question'" in err
    path.write_text("code,points\nx,1\n")
    assert main(["grade", "merge-manual", str(path), "--update", str(graded["results"])]) == 2
    assert "no column 'student code'" in capsys.readouterr().err
    assert snapshot(graded["results"]) == before


def test_merge_manual_folds_scores_into_totals_and_every_export(graded, tmp_path):
    import shutil

    # a copy: the other tests see the run as graded (and the results folder can move)
    results = Path(shutil.copytree(graded["results"], tmp_path / "moved-results"))
    before = reports(results)
    path = _scores(graded, tmp_path / "scores.csv", {"alice": ("2", "Clear and complete."),
                                                     "carol": ("1.5", "Say why a saturated softmax stalls.")})
    assert main(["grade", "merge-manual", str(path), "--update", str(results), "--no-summary"]) == 0
    after = reports(results)
    question = graded["questions"][0]["id"]
    for student, points in (("alice", 2.0), ("carol", 1.5), ("bob", 0.0)):
        report = after[student]
        row = next(r for r in report["written"] if r["id"] == question)
        assert row["graded"] == (student != "bob") and row["points"] == points
        assert report["written_total"] == points and report["total"] == before[student]["total"]
        grand = report["total"] + report["written_total"]
        csv_row = next(r for r in rows(results / "grades.csv") if f"/{student}/" in r["file"])
        assert csv_row[question] == ("" if student == "bob" else f"{points:g}") and csv_row["written"] == f"{points:g}"
        canvas = {r[0]: r[-1] for r in csv.reader(io.StringIO((results / "canvas.csv").read_text()))}
        assert canvas[student] == f"{grand:g}"
        gradescope = json.loads(next((results / "gradescope").glob(f"{student}*/results.json")).read_text())
        jsonschema.validate(gradescope, SCHEMA)
        assert gradescope["score"] == grand
        page = next((results / "feedback").glob(f"{student}*")).read_text()
        assert f"{grand:g} / {report['max'] + report['written_max']:g} points" in page
    assert "Say why a saturated softmax stalls." in next((results / "feedback").glob("carol*")).read_text()
    assert "Clear and complete." not in next((results / "feedback").glob("carol*")).read_text()
    assert after["bob"] == before["bob"]
    # the scores stay in the rewritten scores.csv, so a later merge or regrade keeps them
    kept = {r["student code"]: r["score"] for r in rows(results / "manual" / manual.SCORES_NAME)}
    assert kept[graded["codes"]["carol"]] == "1.5"


def test_a_regrade_keeps_hand_scores_of_unchanged_answers():
    old = {"written": [{"id": "q", "answer": "same", "graded": True, "points": 1.0, "comment": "ok",
                        "max_points": 2.0}]}
    new = copy.deepcopy(old)
    new["written"][0].update(graded=False, points=0.0, comment="")
    update._keep_hand_grading(old, new)
    assert new["written"][0]["points"] == 1.0 and new["written_total"] == 1.0
    changed = copy.deepcopy(new)
    changed["written"][0].update(answer="other", graded=False, points=0.0)
    update._keep_hand_grading(old, changed)
    assert changed["written_total"] == 0.0
