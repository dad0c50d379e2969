"""Attacks a hostile student tried on ``mhacourse grade``: each must change nothing but their own score.

One batch (``--jobs 2``) grades every attack notebook of
``tests/fixtures/make_attacks.py`` and a victim (a full solution in the same
folder); one more run with ``--jobs 1`` grades the notebook that kills its
parent process, then the victim.
"""

import argparse
import hashlib
import importlib.util
import json
import os
from pathlib import Path

import mlx.core as mx
import pytest

from mhacourse.grading import check, get_exercise, grade
from mhacourse.grading import isolation as sandbox

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 10

spec = importlib.util.spec_from_file_location("make_attacks", REPO / "tests" / "fixtures" / "make_attacks.py")
make_attacks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_attacks)

pytestmark = pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap cannot run here")


def _orphans():
    """Processes whose command line is the attack's detached ``sleep``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            parts = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if make_attacks.ORPHAN_SECONDS.encode() in parts:
            found.append(cmdline.parent.name)
    return found


@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    expected, names = make_attacks.make_attacks(folder)
    paths = [folder / name for name in sorted(expected)]
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    reports = grade.grade_many(paths, jobs=2, timeout=TIMEOUT, progress=False, secret="attacks")
    alive_after = _orphans()
    single = grade.grade_many([folder / names["kill_parent"], folder / names["victim"]], jobs=1,
                              timeout=TIMEOUT, progress=False, secret="attacks")
    return {"expected": expected, "names": names, "folder": folder, "before": before, "alive_after": alive_after,
            "reports": {Path(r["file"]).name: r for r in reports},
            "single": {Path(r["file"]).name: r for r in single}}


def _verdict(report, want):
    points = {row["id"]: row["points"] for row in report["exercises"]}
    want_points = {row["id"]: row["max_points"] if row["id"] in want["solved"] else 0.0 for row in report["exercises"]}
    total = sum(get_exercise(ex_id).points for ex_id in want["solved"])
    return (report["status"], points, report["total"]) == (want["status"], want_points, float(total))


ATTACKS = [
    "forged_json_dump", "patched_numpy_all", "reads_the_stack", "reads_history", "empties_others",
    "kills_parent", "setsid_child", "three_kernel_kills", "regenerated_ids", "answer_kills",
    "forbidden_mx_softmax", "forbidden_by_getattr", "partial_course_code", "compiled_course_code",
    "copied_course_function", "copied_course_class", "wraps_reference_without_profiler", "patched_reference",
    "forbidden_mx_fast", "victim",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_gets_exactly_its_own_score(attacks, attack):
    name = next(n for n in attacks["expected"] if n.endswith(f"__attack_{attack}.ipynb"))
    report, want = attacks["reports"][name], attacks["expected"][name]
    assert _verdict(report, want), json.dumps(
        {"status": report["status"], "want": want, "detail": report["detail"],
         "rows": [(r["id"], r["points"], r["policy"], r["tampered"], r["error"]) for r in report["exercises"]]},
        indent=1)


def test_policy_violations_name_the_rule(attacks):
    reports = attacks["reports"]

    def row(attack, exercise_id):
        name = next(n for n in reports if n.endswith(f"__attack_{attack}.ipynb"))
        return next(r for r in reports[name]["exercises"] if r["id"] == exercise_id)

    assert row("forbidden_mx_softmax", "softmax")["policy"] == ["uses mx.softmax (forbidden in softmax)"]
    assert row("forbidden_by_getattr", "softmax")["policy"] == ["uses mx.softmax (forbidden in softmax)"]
    assert any("mx.fast." in v for v in row("forbidden_mx_fast", "grouped_query_attention")["policy"])
    copied = row("copied_course_function", "scaled_dot_product_attention")["tampered"]
    assert any("contains the code of the course's" in v for v in copied), copied
    assert any("SingleHeadAttention" in v for v in row("copied_course_class", "single_head_attention")["tampered"])


def test_kill_parent_loses_nothing_with_one_job(attacks):
    single, names = attacks["single"], attacks["names"]
    for name in (names["kill_parent"], names["victim"]):
        assert _verdict(single[name], attacks["expected"][name]), single[name]["detail"]


def test_no_process_started_by_a_submission_outlives_grading(attacks):
    assert attacks["alive_after"] == []
    assert _orphans() == []


def test_other_submissions_and_history_stay_out_of_reach(attacks):
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in attacks["folder"].glob("*.ipynb")}
    assert {name: after[name] for name in attacks["before"]} == attacks["before"]
    assert not list(Path.home().glob(".ipython/profile_default/history.sqlite-mhacourse*"))


def test_hidden_cases_are_reported_without_their_inputs(attacks):
    victim = attacks["reports"][attacks["names"]["victim"]]
    rows = [case for row in victim["exercises"] for case in row["cases"]]
    hidden = [case for case in rows if case["hidden"]]
    assert hidden and all(case["status"] == "passed" for case in rows)
    assert all(case["name"].startswith(("hidden case ", "property: ")) or not case["hidden"] for case in rows)
    assert "timing" in victim and victim["timing"]["runs"] == 1


# ---------------------------------------------------------------------------
# check() never raises


class _Loud(Exception):
    def __str__(self):
        raise SystemExit("from __str__")


class _Unprintable:
    def __repr__(self):
        raise KeyboardInterrupt

    __str__ = __repr__


@pytest.mark.parametrize("answer", [
    lambda x, num_heads: (_ for _ in ()).throw(_Loud()),
    lambda x, num_heads: _Unprintable(),
    lambda x, num_heads: (_ for _ in ()).throw(KeyboardInterrupt()),
], ids=["exception-str-raises-SystemExit", "output-repr-raises-KeyboardInterrupt", "KeyboardInterrupt"])
def test_check_never_raises(answer):
    result = check("split_heads", answer)
    assert (result.passed, result.points) == (False, 0)
    assert result.status in ("error", "failed")
    assert isinstance(result.report(), str)


def test_check_enforces_the_policy_like_the_grader():
    def softmax(x):
        return mx.softmax(x, axis=-1)

    result = check("softmax", softmax)
    assert (result.passed, result.status) == (False, "invalid")
    assert "uses mx.softmax (forbidden in softmax)" in result.message

    import functools

    import mhacourse

    borrowed = check("scaled_dot_product_attention", functools.partial(mhacourse.scaled_dot_product_attention))
    assert not borrowed.passed and "course's" in borrowed.message


# ---------------------------------------------------------------------------
# Without bwrap


def _cli(argv):
    parser = argparse.ArgumentParser(prog="mhacourse grade")
    grade.configure(parser)
    return grade.run(parser.parse_args(argv))


def test_without_bwrap_grading_needs_no_sandbox(tmp_path, monkeypatch, capsys):
    expected, names = make_attacks.make_attacks(tmp_path / "in")
    victim = tmp_path / "in" / names["victim"]
    monkeypatch.setattr(sandbox, "bwrap_available", lambda: False)
    assert _cli([str(victim), "--out", str(tmp_path / "g.csv"), "--no-progress"]) == 2
    assert "--no-sandbox" in capsys.readouterr().err
    report, = grade.grade_many([victim], timeout=TIMEOUT, progress=False, sandbox=False)
    assert report["flags"] == ["unsandboxed"] and report["status"] == "ok"
    assert report["total"] == report["max"] > 0


def test_secret_file_makes_hidden_cases_repeatable(tmp_path, monkeypatch):
    (tmp_path / "secret").write_text("s3cret\n")
    assert grade.read_secret(str(tmp_path / "secret")) == "s3cret"
    monkeypatch.setenv(grade.SECRET_ENV, "from-env")
    assert grade.read_secret(None) == "from-env"
    with pytest.raises(ValueError, match="--secret-file"):
        grade.read_secret(str(tmp_path / "missing"))
    first = grade._lesson_job("02", "a", 10.0)
    again = grade._lesson_job.__wrapped__("02", "a", 10.0)
    other = grade._lesson_job.__wrapped__("02", "b", 10.0)
    assert [c for item in first for c in item["_inputs"]] == [c for item in again for c in item["_inputs"]]
    assert [c for item in first for c in item["_inputs"]] != [c for item in other for c in item["_inputs"]] or not any(
        get_exercise(item["id"]).hidden_cases for item in first)


def test_forged_records_cannot_earn_points(tmp_path):
    """Whatever the sandbox sends, only outputs equal to the reference's pass."""
    exercise = {"id": "split_heads", "answer_name": "split_heads", "max_points": 1.0}
    item = grade._lesson_job("02", "forged", 10.0)[0]
    assert item["id"] == "split_heads"
    folder = tmp_path / "ex0"
    folder.mkdir()
    forged = {"exercise_id": "split_heads", "defined": True, "passed": True, "points": 100, "problem": None,
              "outcomes": [{"error": None, "value": {"t": "v", "v": "passed"}}] * item["calls"],
              "recorded": []}
    record = grade._read_record(forged, folder, item)
    row = grade._judge_exercise(exercise, item, record, None, 1, 10)
    assert (row["passed"], row["points"]) == (False, 0.0)
    escaping = {**forged, "outcomes": [{"error": None, "value": {
        "t": "mx", "dtype": "float32", "file": "../../etc/passwd.npy"}}]}
    row = grade._judge_exercise(exercise, item, grade._read_record(escaping, folder, item), None, 1, 10)
    assert (row["passed"], row["points"]) == (False, 0.0)
