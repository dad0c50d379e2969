"""Attacks a hostile student tried on ``mhacourse grade``: each must change nothing but their own score.

One batch (``--jobs 2``) grades every attack notebook of
``tests/fixtures/make_attacks.py`` and a victim (a full solution in the same
folder); one more run with ``--jobs 1`` grades the notebook that kills its
parent process, then the victim.
"""

import argparse
import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import time
from pathlib import Path

import mlx.core as mx
import pytest

from mhacourse.grading import check, get_exercise
from mhacourse.grading.batch import cli, job, pool, report, run
from mhacourse.grading.batch import isolation as sandbox

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
    reports = pool.grade_many(paths, jobs=2, timeout=TIMEOUT, progress=False, secret="attacks")
    alive_after = _orphans()
    single = pool.grade_many([folder / names["kill_parent"], folder / names["victim"]], jobs=1,
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
    cli.configure(parser)
    return cli.run(parser.parse_args(argv))


def test_without_bwrap_grading_needs_no_sandbox(tmp_path, monkeypatch, capsys):
    expected, names = make_attacks.make_attacks(tmp_path / "in")
    victim = tmp_path / "in" / names["victim"]
    monkeypatch.setattr(sandbox, "bwrap_available", lambda: False)
    assert _cli([str(victim), "--out", str(tmp_path / "g.csv"), "--no-progress"]) == 2
    assert "--no-sandbox" in capsys.readouterr().err
    report, = pool.grade_many([victim], timeout=TIMEOUT, progress=False, sandbox=False)
    assert report["flags"] == ["unsandboxed"] and report["status"] == "ok"
    assert report["total"] == report["max"] > 0


def test_secret_file_makes_hidden_cases_repeatable(tmp_path, monkeypatch):
    (tmp_path / "secret").write_text("s3cret\n")
    assert cli.read_secret(str(tmp_path / "secret")) == "s3cret"
    monkeypatch.setenv(cli.SECRET_ENV, "from-env")
    assert cli.read_secret(None) == "from-env"
    with pytest.raises(ValueError, match="--secret-file"):
        cli.read_secret(str(tmp_path / "missing"))
    first = job._lesson_job("02", "a", 10.0)
    again = job._lesson_job.__wrapped__("02", "a", 10.0)
    other = job._lesson_job.__wrapped__("02", "b", 10.0)
    assert [c for item in first for c in item["_inputs"]] == [c for item in again for c in item["_inputs"]]
    assert [c for item in first for c in item["_inputs"]] != [c for item in other for c in item["_inputs"]] or not any(
        get_exercise(item["id"]).hidden_cases for item in first)


def test_forged_records_cannot_earn_points(tmp_path):
    """Whatever the sandbox sends, only outputs equal to the reference's pass."""
    exercise = {"id": "split_heads", "answer_name": "split_heads", "max_points": 1.0}
    item = job._lesson_job("02", "forged", 10.0)[0]
    assert item["id"] == "split_heads"
    folder = tmp_path / "ex0"
    folder.mkdir()
    forged = {"exercise_id": "split_heads", "defined": True, "passed": True, "points": 100, "problem": None,
              "outcomes": [{"error": None, "value": {"t": "v", "v": "passed"}}] * item["calls"],
              "recorded": []}
    record = run._read_record(forged, folder, item)
    row = report._judge_exercise(exercise, item, record, None, 1, 10)
    assert (row["passed"], row["points"]) == (False, 0.0)
    escaping = {**forged, "outcomes": [{"error": None, "value": {
        "t": "mx", "dtype": "float32", "file": "../../etc/passwd.npy"}}]}
    row = report._judge_exercise(exercise, item, run._read_record(escaping, folder, item), None, 1, 10)
    assert (row["passed"], row["points"]) == (False, 0.0)


# ---------------------------------------------------------------------------
# Grading v3: a student who has read the grader's source, and a class with odd names and files

V3_TIMEOUT = 10


@pytest.fixture(scope="module")
def v3(tmp_path_factory):
    """Every v3 attack, links, formula names and a victim, graded by the command line with every output."""
    root = tmp_path_factory.mktemp("v3")
    folder = root / "class"
    expected = make_attacks.make_v3_attacks(folder)
    victim = folder / "alice" / "01_attention_one_head.ipynb"
    victim.parent.mkdir()
    victim.write_text((REPO / "solutions" / "01_attention_one_head.ipynb").read_text(encoding="utf-8"),
                      encoding="utf-8")
    links = folder / "mallory"
    links.mkdir()
    (links / "01_attention_one_head.ipynb").symlink_to(victim)
    (links / "03_masks.ipynb").symlink_to(REPO / "solutions" / "03_masks.ipynb")
    (folder / "linked_folder").symlink_to(victim.parent, target_is_directory=True)
    formulas = ['=HYPERLINK("https:example.com","x")', "+1+2", "-2+3", "@SUM(1,1)"]
    for name in formulas:
        (folder / name).mkdir()
        (folder / name / "01_attention_one_head.ipynb").write_text(
            (REPO / "exercises" / "01_attention_one_head.ipynb").read_text(encoding="utf-8"), encoding="utf-8")
    out = root / "out"
    out.mkdir()
    started = time.perf_counter()
    status = _cli([str(folder), "--out", str(out / "grades.csv"), "--json", str(out / "json"), "--jobs", "2",
                   "--timeout", str(V3_TIMEOUT), "--canvas", str(out / "canvas.csv"), "--feedback",
                   str(out / "feedback"), "--gradescope", str(out / "gradescope"), "--no-progress", "--no-summary"])
    seconds = time.perf_counter() - started
    reports = {}
    for file in (out / "json").glob("*.json"):
        report = json.loads(file.read_text(encoding="utf-8"))
        if "file" in report:
            reports[os.path.relpath(report["file"], folder)] = report
    return {"status": status, "expected": expected, "reports": reports, "out": out, "folder": folder,
            "formulas": formulas, "seconds": seconds}


def _named(v3, attack):
    return next(r for key, r in v3["reports"].items() if key.endswith(f"__v3_{attack}.ipynb") or (
        attack == "non_utf8_name" and "broken_name" in key))


V3_ATTACKS = ["rebound_run_given", "swapped_code", "emptied_evidence", "nn_softmax", "replaced_policy",
              "reference_inside_body", "laundered_run_given", "pasted_and_renamed_copies", "lookup_table",
              "same_lesson_public_name", "constant_timing", "shadow_read", "threads_past_limit",
              "tmpfs_and_disk_fill", "forged_events", "reads_stdin", "surrogate_error", "matplotlib_inline",
              "non_utf8_name"]


def test_v3_run_writes_every_output(v3):
    assert v3["status"] == 0
    for name in ("grades.csv", "canvas.csv", "json", "feedback", "gradescope"):
        assert (v3["out"] / name).exists(), name
    assert not (v3["out"] / "grades.csv.journal.jsonl").exists()  # removed once everything is written


@pytest.mark.parametrize("attack", V3_ATTACKS)
def test_v3_attack_gets_exactly_its_own_score(v3, attack):
    want = next(w for w in v3["expected"].values() if w["attack"] == attack)
    report = _named(v3, attack)
    points = {row["id"]: row["points"] for row in report["exercises"]}
    want_points = {row["id"]: row["max_points"] if row["id"] in want["solved"] else 0.0 for row in report["exercises"]}
    total = float(sum(get_exercise(ex_id).points for ex_id in want["solved"]))
    assert (report["status"], points, report["total"]) == (want["status"], want_points, total), json.dumps(
        {"status": report["status"], "detail": report["detail"], "review": report.get("review"),
         "rows": [(r["id"], r["points"], r["policy"], r["tampered"], r["error"]) for r in report["exercises"]]},
        indent=1)


def test_v3_policy_names_what_the_source_shows(v3):
    def row(attack, exercise_id):
        return next(r for r in _named(v3, attack)["exercises"] if r["id"] == exercise_id)

    assert "uses nn.softmax (forbidden in softmax)" in row("nn_softmax", "softmax")["policy"]
    assert row("emptied_evidence", "softmax")["policy"] == ["uses mx.softmax (forbidden in softmax)"]
    assert any("grading package" in t for t in row("reference_inside_body", "softmax")["tampered"])
    assert any("grading package" in t for t in row("laundered_run_given", "causal_mask")["tampered"])
    copies = row("pasted_and_renamed_copies", "padding_mask")["tampered"] + \
        row("pasted_and_renamed_copies", "causal_mask")["tampered"]
    assert any("padding_mask" in t for t in copies) and any("causal_mask" in t for t in copies), copies
    assert any("padding_mask" in t for t in row("same_lesson_public_name", "padding_mask")["tampered"])
    timing = row("constant_timing", "time_per_call")
    assert timing["hint_id"] == "timing_constant" and not timing["passed"]
    review = " ".join(_named(v3, "rebound_run_given")["review"])
    assert "vars()" in review and ".__mro__" in review
    assert ".__code__" in " ".join(_named(v3, "swapped_code")["review"])
    assert "pickle" in " ".join(_named(v3, "lookup_table")["review"])


def test_v3_the_host_holds(v3):
    shadow = _named(v3, "shadow_read")
    assert "PermissionError" in shadow["detail"]
    for path in v3["out"].rglob("*"):
        if path.is_file():
            assert "root:" not in path.read_text(encoding="utf-8", errors="replace"), path
    threads = _named(v3, "threads_past_limit")["detail"]
    assert "can't start new thread" in threads and "started 4500" not in threads, threads
    fill = _named(v3, "tmpfs_and_disk_fill")["detail"]
    sizes = [int(n) for n in re.findall(r": (\d+) MiB", fill)]
    assert len(sizes) == 2 and max(sizes) <= 256 and "no limit" not in fill, fill
    forged = _named(v3, "forged_events")
    assert "nonce" in forged["detail"] and forged["seconds"] < 60, (forged["detail"], forged["seconds"])
    assert "RuntimeError: b''" in _named(v3, "reads_stdin")["detail"]  # no input on stdin while cells run


def test_v3_a_lone_surrogate_and_a_non_utf8_name_cost_nothing(v3):
    text = (v3["out"] / "grades.csv").read_text(encoding="utf-8")
    assert "\\ud800 and a lone surrogate" in text
    assert "caf\\udce9_broken_name" in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(v3["reports"])
    assert len(list((v3["out"] / "feedback").glob("*.html"))) == len(v3["reports"])


def test_v3_links_are_refused(v3):
    linked = {key: r for key, r in v3["reports"].items() if key.startswith(("mallory/", "linked_folder"))}
    assert set(linked) == {"mallory/01_attention_one_head.ipynb", "mallory/03_masks.ipynb", "linked_folder"}
    for refused in linked.values():
        assert (refused["status"], refused["total"]) == ("refused", 0.0), refused
        assert "symbolic link" in refused["detail"]
    assert v3["reports"]["alice/01_attention_one_head.ipynb"]["status"] == "ok"


def test_v3_formula_names_stay_text_in_every_csv(v3):
    for name in ("grades.csv", "canvas.csv"):
        for row in csv.reader(io.StringIO((v3["out"] / name).read_text(encoding="utf-8"))):
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
    canvas = (v3["out"] / "canvas.csv").read_text(encoding="utf-8")
    for formula in v3["formulas"]:
        assert "'" + formula.replace('"', '""') in canvas


def test_v3_merge_keeps_every_output_inside_its_folder(tmp_path):
    from mhacourse.grading.classroom import shards

    failed = report._failed_report("x.ipynb", ValueError("x"))
    part = {"format": shards.PART_FORMAT, "version": shards.PART_VERSION, "shard": 1, "shards": 1, "submissions": 1,
            "fingerprint": "f", "reports": [{"index": 0, "key": "/tmp/escape/../../etc/evil.ipynb", "report": failed}]}
    (tmp_path / "g.part.json").write_text(json.dumps(part))
    out = tmp_path / "merged"
    out.mkdir()
    from mhacourse.cli import main

    status = main(["grade", "merge", str(tmp_path / "g.part.json"), "--out", str(out / "grades.csv"), "--gradescope",
                   str(out / "gs"), "--feedback", str(out / "fb"), "--no-summary"])
    assert status == 0
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(out in p.parents for p in written)
    assert not Path("/etc/evil.html").exists() and not Path("/tmp/escape").exists()


def test_v3_output_paths_are_checked_before_grading(tmp_path, capsys):
    (tmp_path / "a.ipynb").write_text("{}")
    started = time.perf_counter()
    assert _cli([str(tmp_path / "a.ipynb"), "--out", str(tmp_path / "nodir" / "grades.csv"), "--no-progress"]) == 2
    assert "the folder" in capsys.readouterr().err and time.perf_counter() - started < 5
    assert _cli([str(tmp_path / "a.ipynb"), "--out", str(tmp_path / "g.csv"), "--json", str(tmp_path / "a.ipynb"),
                 "--no-progress"]) == 2


def test_v3_ctrl_c_keeps_what_was_graded_and_resume_finishes(tmp_path, monkeypatch, capsys):
    for n in range(3):
        (tmp_path / f"{n}_x.ipynb").write_text("not a notebook")
    out = tmp_path / "grades.csv"
    real, calls = pool._grade_safely, []

    def stopping(path, options):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, options)

    monkeypatch.setattr(pool, "_grade_safely", stopping)
    assert _cli([str(tmp_path), "--out", str(out), "--no-progress", "--no-summary"]) == 130
    assert "--resume" in capsys.readouterr().err
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 1
    monkeypatch.setattr(pool, "_grade_safely", real)
    assert _cli([str(tmp_path), "--out", str(out), "--no-progress", "--no-summary", "--resume"]) == 0
    assert "resuming: 1 of 3 already graded" in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [row["status"] for row in rows] == ["invalid-notebook"] * 3


def test_v3_the_sandbox_sees_no_reference():
    """Per lesson, the course view holds no checks, registry, hidden cases, policy or solutions, and no
    module of that lesson's implementations; inside the sandbox none of them imports."""
    import subprocess
    import sys

    from mhacourse.grading import exercise_ids, policy
    from mhacourse.grading.batch.view import PACKAGE_DIR

    for lesson in sorted({get_exercise(i).lesson for i in exercise_ids()}):
        view = job._view(lesson)
        files = {p.relative_to(view).as_posix() for p in view.rglob("*.py")}
        assert not {f for f in files if f.startswith("mhacourse/grading/") and not f.startswith(
            ("mhacourse/grading/sandbox/", "mhacourse/grading/__init__.py"))}, files
        for exercise_id in job.lesson_exercises(lesson):
            for obj, _ in policy._implementations(get_exercise(exercise_id["id"])).values():
                module = getattr(obj, "__module__", "")
                if module.startswith("mhacourse.") and not module.startswith("mhacourse.grading"):
                    path = view / (module.replace(".", "/") + ".py")
                    # absent, or (capstone in lesson 08) a stand-in holding only the constants it gives
                    assert not path.exists() or not re.search(
                        rf"^(def|class) {obj.__name__}\b", path.read_text(), flags=re.M), (lesson, module)
        probe = ("import importlib, os\n"
                 "for name in ('mhacourse.grading.registry', 'mhacourse.grading.checks', 'mhacourse.grading.hidden',"
                 " 'mhacourse.grading.policy', 'mhacourse.grading.source_policy', 'mhacourse.grading.batch.cli'):\n"
                 "    try:\n        importlib.import_module(name)\n        print('IMPORTED', name)\n"
                 "    except ImportError:\n        pass\n"
                 f"print('PACKAGE', os.listdir({str(PACKAGE_DIR)!r})"
                 f" if os.path.isdir({str(PACKAGE_DIR)!r}) else None)\n")
        args = (sandbox._bwrap_args(view, sandbox.Limits()) + [
            arg for key, value in sandbox._environment(sandbox.HOME, sandbox.COURSE).items()
            for arg in ("--setenv", key, value)] + ["--"] + sandbox._drop_privileges() + [sys.executable, "-c", probe])
        done = subprocess.run(args, capture_output=True, text=True, env=sandbox._bwrap_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        assert "IMPORTED" not in done.stdout and done.stdout.strip() in ("PACKAGE None", "PACKAGE []"), done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the grader runs as root only in this test's premise")
def test_v3_a_root_grader_leaves_nothing_readable_inside_that_only_root_reads_outside():
    import stat
    import subprocess
    import sys

    view = job._view("02")
    roots = ["/etc", sys.prefix, sandbox.COURSE]
    probe = ("import os, sys\n"
             f"for root in {roots!r}:\n"
             "    for folder, dirs, files in os.walk(root):\n"
             "        for name in files:\n"
             "            path = os.path.join(folder, name)\n"
             "            try:\n                open(path, 'rb').close()\n                print(path)\n"
             "            except OSError:\n                pass\n")
    args = (sandbox._bwrap_args(view, sandbox.Limits()) + ["--"] + sandbox._drop_privileges()
            + [sys.executable, "-c", probe])
    done = subprocess.run(args, capture_output=True, text=True, env=sandbox._bwrap_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    readable = [line for line in done.stdout.splitlines() if not line.startswith(sandbox.COURSE)]
    assert len(readable) > 100  # the probe did read what everyone may read
    root_only = []
    for path in readable:
        info = os.stat(path)
        if not info.st_mode & stat.S_IROTH and info.st_uid != sandbox.NOBODY:
            root_only.append(path)
    assert root_only == []
    assert "/etc/shadow" not in readable


def test_v3_check_enforces_its_time_limit_where_mlx_has_no_stream():
    import time as clock

    lazy = mx.ones((2, 3, 8)) * 2  # built in this thread: the check must run the answer here

    def split_heads(x, num_heads):
        y = x + lazy - lazy
        mx.eval(y)
        start = clock.perf_counter()
        while clock.perf_counter() - start < 8:
            pass
        return y.reshape(x.shape[0], x.shape[1], num_heads, -1).transpose(0, 2, 1, 3)

    started = clock.perf_counter()
    result = check("split_heads", split_heads, time_limit=2)
    assert (result.passed, result.status) == (False, "timeout") and clock.perf_counter() - started < 6
