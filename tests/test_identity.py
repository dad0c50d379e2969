"""Issue 18 (items 1 and 6): who submitted each notebook, late work, and the text a student reads.

Unit tests on synthetic reports and files (no sandbox): identities from Gradescope's
``submission_metadata.yml``, Canvas's download names and a roster (NFC names); unmatched and
ungraded notebooks exported empty, never 0; the late column and ``--late-policy``; one cell
numbering; expected vs got for failed visible cases; the wording of feedback pages and the summary.
"""

import csv
import io
import json

import pytest

from mhacourse.grading.batch.outputs import csv_text
from mhacourse.grading.classroom import exports, feedback, identity, summary
from tests.test_classroom import report, row

METADATA = """\
:submission_method: :upload
:created_at: 2026-10-03 10:00:00.000000000 +00:00
:assignment:
  :due_date: 2026-10-01 23:00:00.000000000 +00:00
  :title: Lesson 02
:users:
- :email: ana@uni.edu
  :name: Ana Pérez
  :sid: '900123'
"""
ROSTER = ("Student,ID,SIS User ID,SIS Login ID,Section\n"
          "    Points Possible,,,,\n"
          "\"García, José\",4021,S1,jgarcia,A\n"
          "Renée Dubois,4022,S2,rdubois,A\n"
          "Test Student,9999,,,\n")


def read_csv(text):
    return list(csv.reader(io.StringIO(text)))


def test_gradescope_metadata_gives_the_student_and_days_late(tmp_path):
    folder = tmp_path / "submission_111"
    folder.mkdir()
    (folder / "submission_metadata.yml").write_text(METADATA, encoding="utf-8")
    who = identity.identify(folder / "02_many_heads.ipynb", "submission_111/02_many_heads.ipynb")
    assert (who.student, who.name, who.login, who.source) == ("900123", "Ana Pérez", "ana@uni.edu", "gradescope")
    assert who.late and who.days_late == 2  # 1 day 11 h late: 2 days, rounded up


def test_gradescope_export_metadata_in_the_parent_keyed_by_folder(tmp_path):
    (tmp_path / "submission_7").mkdir()
    (tmp_path / "submission_metadata.yml").write_text(
        "submission_7:\n  :submitters:\n  - :name: Bo Li\n    :sid: '42'\n    :email: bo@uni.edu\n", encoding="utf-8")
    who = identity.identify(tmp_path / "submission_7" / "a.ipynb", "submission_7/a.ipynb")
    assert who.student == "42" and who.name == "Bo Li"


def test_canvas_download_names_keep_the_user_id_and_late():
    who = identity.identify("/x/jgarcia_LATE_4021_77_02_many_heads.ipynb", "jgarcia_LATE_4021_77_02_many_heads.ipynb")
    assert (who.student, who.canvas_id, who.login, who.late, who.source) == ("4021", "4021", "jgarcia", True, "canvas")
    assert not identity.identify("/x/rdubois_4022_78_02.ipynb", "rdubois_4022_78_02.ipynb").late


def test_roster_matches_folders_by_login_sis_id_or_nfc_name(tmp_path):
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    roster = identity.Roster(identity.read_roster(tmp_path / "roster.csv"))
    assert len(roster.students) == 2  # no Points Possible row, no Test Student
    decomposed = "Rene\u0301e Dubois"
    for folder, want in (("jgarcia", "4021"), ("S1", "4021"), (decomposed, "4022"), ("RENÉE DUBOIS", "4022")):
        who = identity.identify(tmp_path / folder / "02.ipynb", f"{folder}/02.ipynb", roster)
        assert who.matched and who.student == want and who.source == "roster", folder
    canvas = identity.identify(tmp_path / "rdubois_4022_1_02.ipynb", "rdubois_4022_1_02.ipynb", roster)
    assert canvas.name == "Renée Dubois" and canvas.sid == "S2"  # the roster completes Canvas's name
    lost = identity.identify(tmp_path / "mallory" / "02.ipynb", "mallory/02.ipynb", roster)
    assert not lost.matched and lost.student == ""


def test_any_csv_with_login_and_name_columns_is_a_roster(tmp_path):
    (tmp_path / "r.csv").write_text("name,email\nZoë Ng,zng@uni.edu\n", encoding="utf-8")
    roster = identity.Roster(identity.read_roster(tmp_path / "r.csv"))
    assert roster.find("zng")["name"] == "Zoë Ng"
    (tmp_path / "bad.csv").write_text("colour,size\nred,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no id, login or name column"):
        identity.read_roster(tmp_path / "bad.csv")


def graded(file, total, *, who=None, status="ok"):
    rep = report(file, "02", [row("split_heads", total, 2.0)], status=status)
    if who is not None:
        rep["student"] = who
        if not who.get("matched"):
            rep["flags"] = ["unmatched"]
    return rep


def test_canvas_csv_fills_ids_from_identities_and_leaves_unmatched_and_ungraded_empty():
    ana = identity.Identity(student="4021", name="José García", login="jgarcia", canvas_id="4021", sid="S1",
                            source="roster", matched=True).as_dict()
    bob = identity.Identity(student="4022", name="Renée Dubois", login="rdubois", canvas_id="4022",
                            source="roster", matched=True).as_dict()
    reports = [graded("a/02.ipynb", 2.0, who=ana), graded("b/02.ipynb", 0.0, who=bob, status="invalid-notebook"),
               graded("m/02.ipynb", 2.0, who=identity.Identity().as_dict())]
    rows = read_csv(exports.canvas_csv(reports, ["a/02.ipynb", "b/02.ipynb", "m/02.ipynb"]))
    assert rows[0] == [*exports.CANVAS_FIXED_COLUMNS, "Lesson 02"]
    assert rows[1][0].strip() == "Points Possible" and rows[1][-1] == "2"
    body = {r[0]: r for r in rows[2:]}
    assert body["José García"][1:4] == ["4021", "S1", "jgarcia"] and body["José García"][-1] == "2"
    assert body["Renée Dubois"][-1] == ""  # could not be graded: empty, never 0
    assert body["UNMATCHED m/02.ipynb"][1:5] == ["", "", "", ""] and body["UNMATCHED m/02.ipynb"][-1] == ""


@pytest.mark.parametrize("status", exports.UNGRADED)
def test_a_notebook_that_could_not_be_graded_is_empty_in_canvas_without_identities(status):
    rows = read_csv(exports.canvas_csv([graded("alice/02.ipynb", 0.0, status=status)], ["alice/02.ipynb"]))
    assert rows[2][0] == "alice" and rows[2][-1] == ""


def test_grades_csv_has_student_and_late_columns_and_the_unmatched_flag():
    late = identity.Identity(student="900123", source="gradescope", matched=True, late=True, days_late=2).as_dict()
    rows = list(csv.DictReader(io.StringIO(csv_text([graded("s/02.ipynb", 2.0, who=late),
                                                      graded("m/02.ipynb", 2.0, who=identity.Identity().as_dict())]))))
    assert rows[0]["student"] == "900123" and rows[0]["late"] == "late 2 days"
    assert rows[1]["student"] == "" and rows[1]["flags"] == "unmatched"


@pytest.mark.parametrize("policy, days, want", [("none", 2, 2.0), ("zero", 2, 0.0), ("percent:10", 2, 1.6),
                                                ("percent:10", None, 1.8), ("percent:60", 3, 0.0)])
def test_late_policy(policy, days, want):
    who = {"late": True, "days_late": days}
    assert identity.late_points(2.0, who, policy) == pytest.approx(want)
    assert identity.late_points(2.0, {"late": False}, policy) == 2.0
    rep = graded("s/02.ipynb", 2.0, who={**identity.Identity(student="1", canvas_id="1", matched=True,
                                                           source="canvas").as_dict(), **who})
    assert read_csv(exports.canvas_csv([rep], ["s/02.ipynb"], late_policy=policy))[2][-1] == f"{want:g}"
    assert exports.gradescope_results(rep, late_policy=policy)["score"] == pytest.approx(want)


def test_bad_late_policy_names_the_option():
    with pytest.raises(ValueError, match="--late-policy"):
        identity.parse_late_policy("half")


def test_gradescope_results_visibility_output_format_and_flags():
    rep = graded("s/02.ipynb", 2.0)
    rep["flags"] = ["unsandboxed"]
    results = exports.gradescope_results(rep, visibility="after_due_date")
    assert results["visibility"] == "after_due_date" and results["output_format"] == "text"
    assert all(t["visibility"] == "after_due_date" and t["output_format"] == "text" for t in results["tests"])
    assert results["extra_data"] == {"flags": ["unsandboxed"]}
    with pytest.raises(ValueError, match="visibility"):
        exports.gradescope_results(rep, visibility="sometimes")


# Item 6: the text a student reads.

def test_cells_are_numbered_from_1_over_every_cell_in_detail_and_feedback():
    from mhacourse.grading.batch.report import _cell_list

    assert _cell_list([0, 4]) == "cells 1, 5" and _cell_list([2]) == "cell 3"
    rep = report("a.ipynb", "02", [row("split_heads", 1.0)], status="cells-missing",
                 detail="exercise notebook cells missing: cells 1, 5; needs review: setattr(...)")
    text = feedback.notebook_problem(rep)
    assert text.endswith("exercise notebook cells missing: cells 1, 5") and "review" not in text
    rep = report("a.ipynb", "02", [row("split_heads", 1.0)], status="error",
                 cells=[{"index": 6, "status": "error", "error": "ZeroDivisionError"}])
    assert "Cell 7 raised an error" in feedback.feedback_html(rep)
    assert "Cell 7 raised an error" in exports.gradescope_results(rep)["output"]


def test_unknown_lesson_page_says_it_once_with_no_instructor_option():
    rep = report("homework.ipynb", None, [], status="unknown-lesson",
                 detail="cannot tell which lesson this notebook belongs to (use --lesson)")
    page = feedback.feedback_html(rep)
    assert page.count("which lesson this notebook belongs to") == 1
    assert "--lesson" not in page and "use --" not in exports.gradescope_results(rep)["output"]


def test_invalid_notebook_does_not_read_not_checked_twice():
    rows = [{**row("split_heads", 0.0), "error": "not checked", "defined": False, "cases": [], "passed": False}]
    rep = report("02_x.ipynb", "02", rows, status="invalid-notebook", detail="invalid JSON (Expecting value)")
    page = feedback.feedback_html(rep)
    assert "not checked: not checked" not in page and "not checked" in page
    assert "invalid JSON" in page


def test_no_instructor_flag_or_option_on_a_students_page():
    rep = report("02_x.ipynb", "02", [row("split_heads", 1.0)], status="cells-duplicated",
                 detail="exercise notebook cells duplicated: cell 4; needs review: exec of a string; "
                        "metadata says lesson 03, the file name 02: graded as 03")
    rep["flags"] = ["needs-review", "unsandboxed", "unmatched", "rlimit-only"]
    page = feedback.feedback_html(rep)
    for word in ("needs-review", "unsandboxed", "unmatched", "rlimit-only", "needs review", "metadata says", "--"):
        assert word not in page.split("<body>")[1], word


def test_failed_visible_case_shows_expected_and_got_with_the_first_difference():
    import mlx.core as mx

    from mhacourse.grading.batch.report import _case_rows
    from mhacourse.grading.compare import compare, describe
    from mhacourse.grading.result import CaseResult

    expected = mx.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    got = mx.array([[1.0, 2.0, 3.0], [4.0, 9.0, 6.0]])
    comparisons, mismatch = compare(got, expected)
    assert mismatch.kind == "values" and comparisons[0].first == (1, 1)
    class Result:
        cases = [CaseResult("batch 2", "failed", message="", comparisons=comparisons, expected=describe(expected),
                            got=describe(got))]

    result = Result()

    class Call:
        hidden, name = False, "batch 2"

    rows = _case_rows(result, [Call()])
    assert "first difference at index (1, 1): got 9, expected 5" in rows[0]["difference"]
    item = feedback.exercise_feedback({**row("split_heads", 0.0, cases=[]), "cases": rows, "passed": False})
    text = feedback.exercise_text(item)
    assert "expected: " in text and "(2, 3)" in text and "got: " in text and "index (1, 1)" in text
    assert "index (1, 1)" in feedback.feedback_html({**report("a.ipynb", "02", []), "exercises": [
        {**row("split_heads", 0.0), "cases": rows, "passed": False}]})


def test_exports_and_summary_keep_the_reports_exercise_order():
    from mhacourse.grading.batch.job import lesson_exercises
    from mhacourse.grading.registry import number_of

    for lesson in ("01", "02", "03", "04", "05", "06", "07", "08"):
        numbers = [number_of(e["id"]) for e in lesson_exercises(lesson)]
        assert numbers == sorted(numbers, key=lambda n: tuple(map(int, n.split(".")))), lesson
    ids = [e["id"] for e in lesson_exercises("02")]
    rep = report("a.ipynb", "02", [row(i, 1.0) for i in ids])
    assert [t["name"].split(":")[0] for t in exports.gradescope_results(rep)["tests"]] == ids
    page = feedback.feedback_html(rep)
    assert sorted(ids, key=page.index) == ids
    assert [e["id"] for e in summary.class_summary([rep])["exercises"]] == ids


def test_summary_labels_are_whole_words_and_policy_is_not_a_mistake():
    long_id = "scaled_dot_product_attention_with_mask"
    rows = [row(long_id, 0.0, cases=[], hint_id="forgot_the_square_root_of_the_head_dimension", hint="h",
                passed=False),
            row("merge_heads", 0.0, cases=[], hint_id="policy", hint="uses a forbidden function", passed=False)]
    text = summary.summary_text(summary.class_summary([report("a.ipynb", "02", rows)]))
    assert long_id in text and "forgot_the_square_root_of_the_head_dimension" in text
    assert "policy" not in text.split("most common mistakes")[1]


def test_class_summary_json_is_serialisable():
    json.dumps(summary.class_summary([graded("a/02.ipynb", 1.0)]))
