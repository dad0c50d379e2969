"""A whole class: shards and merge, Gradescope and Canvas exports, feedback, summary.

Most tests run on report dicts shaped like the grader's (old rows without
``cases`` and new rows with visible and hidden cases), so they take well under
a second; the end-to-end test at the bottom grades real fixture notebooks
through the command line, sharded and not.
"""

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest

from mhacourse.grading.classroom import exports, feedback, shards, summary

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "gradescope_results.schema.json").read_text())
HIDDEN_NAME = "hidden case L_q=13 secret-size"
HIDDEN_MESSAGE = "expected shape (3, 13, 24) secret"


def case(name, status="passed", hidden=False, message="", hint_id=None):
    return {"name": name, "status": status, "hidden": hidden, "message": message, "hint_id": hint_id}


def row(exercise_id, points, max_points=1.0, *, cases=None, hint_id=None, hint=None, passed=None, **extra):
    row = {"id": exercise_id, "answer_name": exercise_id, "max_points": max_points, "defined": True,
           "passed": points == max_points if passed is None else passed, "points": points,
           "report": f"[report of {exercise_id}]", "error": None, "tampered": []}
    if cases is not None:
        row.update(cases=cases, hint_id=hint_id, hint=hint, policy=[])
    row.update(extra)
    return row


def report(file, lesson, rows, *, status="ok", cells=(), seconds=1.0, detail=""):
    return {"file": str(file), "lesson": lesson, "status": status, "detail": detail,
            "total": sum(r["points"] for r in rows), "max": sum(r["max_points"] for r in rows),
            "exercises": rows, "cells": list(cells), "flags": [], "seconds": seconds}


def hidden_failure():
    """New shape: visible cases pass, two of three hidden cases fail."""
    cases = [case("batch 2, 3 heads", message=""), case("batch 1, 1 head"),
             case(HIDDEN_NAME, "failed", True, HIDDEN_MESSAGE, "transposed_heads"),
             case(HIDDEN_NAME + " 2", "failed", True, HIDDEN_MESSAGE, "transposed_heads"),
             case(HIDDEN_NAME + " 3", "passed", True)]
    return row("split_heads", 0.0, cases=cases, hint_id="transposed_heads",
               hint="Reshape to (B, L, H, D_h) first, then swap axes 1 and 2.", passed=False)


# ---------------------------------------------------------------------------
# Shards


def make_class(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    return root


NAMES = [f"student{i:02d}/0{i % 3 + 1}_lesson.ipynb" for i in range(40)] + [f"flat_{i}.ipynb" for i in range(9)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_every_submission_lands_in_exactly_one_shard(tmp_path, n):
    submissions = shards.collect([make_class(tmp_path / "class", NAMES)])
    assert len(submissions) == len(NAMES)
    chosen = [index for k in range(1, n + 1) for index in shards.select(submissions, k, n)]
    assert sorted(chosen) == list(range(len(submissions)))


def test_shards_do_not_depend_on_where_the_class_sits(tmp_path, monkeypatch):
    here = shards.collect([make_class(tmp_path / "a" / "class", NAMES)])
    monkeypatch.chdir(tmp_path / "a")
    there = shards.collect(["class"])
    assert [s.key for s in here] == [s.key for s in there]
    assert shards.select(here, 2, 5) == shards.select(there, 2, 5)


def test_a_late_submission_moves_no_one_else(tmp_path):
    before = shards.collect([make_class(tmp_path / "class", NAMES)])
    after = shards.collect([make_class(tmp_path / "class", NAMES + ["student99/02_late.ipynb"])])
    shard_before = {s.key: shards.shard_of(s.key, 7) for s in before}
    assert {s.key: shards.shard_of(s.key, 7) for s in after if s.key in shard_before} == shard_before


@pytest.mark.parametrize("text", ["3", "0/4", "5/4", "a/b", "1/0", "2/3/4"])
def test_bad_shard_is_refused_naming_the_option(text):
    with pytest.raises(ValueError, match="--shard"):
        shards.parse_shard(text)


def grade_parts(tmp_path, submissions, reports, n):
    """Write the n part files a sharded run would write; returns their CSV paths."""
    paths = []
    for k in range(1, n + 1):
        positions = shards.select(submissions, k, n)
        out = tmp_path / f"grades-{k}.csv"
        shards.write_part(shards.part_path(out), [reports[i] for i in positions], submissions, positions, (k, n))
        paths.append(out)
    return paths


def synthetic_reports(submissions):
    """Reports that differ per lesson, so each shard sees other exercise columns."""
    out = []
    for i, submission in enumerate(submissions):
        lesson = submission.key.split("/")[-1][:2] if "/" in submission.key else None
        rows = [row(f"ex{lesson}_{j}", float((i + j) % 2)) for j in range(2)] if lesson else []
        out.append(report(submission.path, lesson, rows, status="ok" if lesson else "unknown-lesson",
                          seconds=0.1 * (i % 7)))
    return out


@pytest.mark.parametrize("n", [2, 5])
def test_merge_gives_the_unsharded_csv_byte_for_byte(tmp_path, n):
    from mhacourse.grading.batch.outputs import csv_text

    submissions = shards.collect([make_class(tmp_path / "class", NAMES)])
    reports = synthetic_reports(submissions)
    parts = grade_parts(tmp_path, submissions, reports, n)
    merged = shards.merge(list(reversed(parts)))  # any order of PARTS
    assert csv_text(merged.reports) == csv_text(reports)
    assert merged.keys == [s.key for s in submissions]


def test_merge_refuses_missing_duplicated_or_foreign_parts(tmp_path):
    submissions = shards.collect([make_class(tmp_path / "class", NAMES)])
    reports = synthetic_reports(submissions)
    parts = grade_parts(tmp_path / "", submissions, reports, 3)
    with pytest.raises(ValueError, match="shard\\(s\\) 2/3 missing"):
        shards.merge([parts[0], parts[2]])
    with pytest.raises(ValueError, match="given twice"):
        shards.merge([parts[0], parts[0], parts[1], parts[2]])
    other = shards.collect([make_class(tmp_path / "other", NAMES[:-1])])
    (tmp_path / "foreign").mkdir()
    foreign = grade_parts(tmp_path / "foreign", other, synthetic_reports(other), 3)
    with pytest.raises(ValueError, match="different runs"):
        shards.merge([parts[0], parts[1], foreign[2]])
    (tmp_path / "x.csv").write_text("file,lesson\n")
    with pytest.raises(ValueError, match="PART"):
        shards.merge([tmp_path / "x.csv"])


# ---------------------------------------------------------------------------
# Gradescope


def class_reports():
    cell_error = {"index": 4, "status": "error", "error": "NameError: name 'mx' is not defined"}
    return [
        report("class/alice/02_many_heads.ipynb", "02", [hidden_failure(), row("merge_heads", 1.0)]),
        report("class/bob/02_many_heads.ipynb", "02", [row("split_heads", 1.0), row("merge_heads", 0.0)],
               status="error", cells=[cell_error]),
        report("class/bob/01_one_head.ipynb", "01", [row("softmax", 1.0, cases=[case("rows sum to 1")])]),
        report("class/carol/02_many_heads.ipynb", None, [], status="invalid-notebook", detail="invalid JSON"),
    ]


KEYS = ["alice/02_many_heads.ipynb", "bob/02_many_heads.ipynb", "bob/01_one_head.ipynb", "carol/02_many_heads.ipynb"]


def test_gradescope_results_follow_the_documented_schema(tmp_path):
    reports = class_reports()
    exports.write_gradescope(reports, exports.output_names(KEYS), tmp_path / "gs")
    files = sorted((tmp_path / "gs").glob("*/results.json"))
    assert [f.parent.name for f in files] == ["alice__02_many_heads", "bob__01_one_head", "bob__02_many_heads",
                                              "carol__02_many_heads"]
    for file in files:
        jsonschema.validate(json.loads(file.read_text()), SCHEMA)
    alice = json.loads(files[0].read_text())
    assert alice["score"] == 1.0 and [t["score"] for t in alice["tests"]] == [0.0, 1.0]
    assert [t["status"] for t in alice["tests"]] == ["failed", "passed"]
    assert "2 hidden checks failed (of 3)" in alice["tests"][0]["output"]
    assert "secret" not in files[0].read_text()  # neither hidden names nor hidden messages
    bob = json.loads(files[2].read_text())
    assert "Cell 5 raised an error: NameError" in bob["output"]
    carol = json.loads(files[3].read_text())
    assert carol["tests"] == [] and carol["score"] == 0.0
    assert "This file could not be read as a notebook: invalid JSON" in carol["output"]


def test_the_schema_rejects_what_gradescope_would(tmp_path):
    good = exports.gradescope_results(class_reports()[0])
    for broken in ({**good, "tests": [{**good["tests"][0], "visibility": "students"}]},
                   {**good, "tests": [{**good["tests"][0], "score": "1"}]},
                   {key: value for key, value in good.items() if key != "score"} | {"tests": [{"name": "x"}]},
                   {**good, "scores": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


def test_gradescope_single_file_for_its_own_container(tmp_path):
    target = tmp_path / "results" / "results.json"
    exports.write_gradescope(class_reports()[:1], ["x"], target)
    jsonschema.validate(json.loads(target.read_text()), SCHEMA)
    with pytest.raises(ValueError, match="exactly one submission"):
        exports.write_gradescope(class_reports(), exports.output_names(KEYS), target)


# ---------------------------------------------------------------------------
# Canvas


def read_csv(text):
    return list(csv.reader(io.StringIO(text)))


def test_canvas_csv_has_the_gradebook_columns_one_row_per_student():
    rows = read_csv(exports.canvas_csv(class_reports(), KEYS))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lesson 01", "Lesson 02"]
    assert rows[1] == ["    Points Possible", "", "", "", "", "1", "2"]
    by_student = {r[0]: r for r in rows[2:]}
    assert sorted(by_student) == ["alice", "bob", "carol"]
    assert by_student["alice"] == ["alice", "", "", "alice", "", "", "1"]  # no lesson 01 notebook: blank
    assert by_student["bob"][5:] == ["1", "1"]
    assert by_student["carol"][5:] == ["", ""]  # not gradable: left for the instructor


def test_canvas_csv_per_exercise_and_canvas_user_ids():
    keys = ["doejane_4021_77_02_many_heads.ipynb", "roefred_LATE_513_78_02_many_heads.ipynb",
            "moejo_99_79_01_one_head.ipynb", "lee_7_80_x.ipynb"]
    rows = read_csv(exports.canvas_csv(class_reports(), keys, by="exercise"))
    assert rows[0][5:] == ["Lesson 01: softmax", "Lesson 02: merge_heads", "Lesson 02: split_heads"]
    assert [r[1] for r in rows[2:]] == ["4021", "513", "7", "99"]  # all digits: Canvas's ID column
    assert rows[2][5:] == ["", "1", "0"]


def test_a_student_with_two_notebooks_of_a_lesson_keeps_the_better_one():
    reports = class_reports()[:2]
    rows = read_csv(exports.canvas_csv(reports, ["sam/a.ipynb", "sam/b.ipynb"], id_column="SIS User ID"))
    assert rows[2] == ["sam", "", "sam", "", "", "1"]


@pytest.mark.parametrize("key, pattern, expected", [
    ("alice/02_many_heads.ipynb", None, "alice"),
    ("submission_123/work/02.ipynb", None, "submission_123"),
    ("doejane_LATE_4021_77_02_many_heads.ipynb", None, "4021"),
    ("alice.ipynb", None, "alice"),
    ("hw/alice-02.ipynb", r"/(?P<id>[a-z]+)-", "alice"),
    ("hw/alice-02.ipynb", r"([a-z]+)-\d+", "alice"),
])
def test_student_id_rule(key, pattern, expected):
    assert exports.student_id(key, pattern) == expected


def test_student_id_pattern_that_does_not_match_names_the_submission():
    with pytest.raises(ValueError, match="--student-id.*bob.ipynb"):
        exports.student_id("bob.ipynb", r"(\d+)")


# ---------------------------------------------------------------------------
# Feedback


def test_feedback_counts_hidden_cases_and_never_shows_them():
    page = feedback.feedback_html(class_reports()[0])
    assert "2 hidden checks failed (of 3)" in page
    assert "secret" not in page and "L_q=13" not in page
    assert "batch 2, 3 heads" in page  # visible cases are shown
    assert "Reshape to (B, L, H, D_h) first" in page
    assert "Every check passed" not in page
    item = feedback.exercise_feedback(hidden_failure())
    assert not item.passed and item.verdict == "the visible checks passed, but 2 hidden checks failed"


def test_feedback_says_every_check_passed_only_when_it_did():
    passing = row("split_heads", 1.0, cases=[case("a"), case("h", hidden=True)])
    assert "Every check passed" in feedback.feedback_html(report("x.ipynb", "02", [passing]))
    wrongly_passed = dict(hidden_failure(), passed=True, points=1.0)  # a grader bug must not say "passed"
    page = feedback.feedback_html(report("x.ipynb", "02", [wrongly_passed]))
    assert "Every check passed" not in page and "hidden checks failed" in page


def test_feedback_escapes_what_the_notebook_wrote():
    attack = "<script>alert(1)</script>"
    cells = [{"index": 0, "status": "error", "error": f"ValueError: {attack}"}]
    evil = row("softmax", 0.0, cases=[case(attack, "failed", message=attack)])
    page = feedback.feedback_html(report(f"{attack}.ipynb", "01", [evil], cells=cells))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_feedback_of_an_old_style_row_shows_the_checker_report():
    page = feedback.feedback_html(report("x.ipynb", "02", [row("merge_heads", 0.0)]))
    assert "[report of merge_heads]" in page and "not passed" in page


def test_feedback_when_an_exercise_could_not_be_checked():
    unchecked = row("softmax", 0.0, defined=False, error="no record came back from the sandbox")
    page = feedback.feedback_html(report("x.ipynb", "01", [unchecked], status="grader-error", detail="internal"))
    assert "not checked: no record came back from the sandbox" in page
    assert "problem in the grader" in page and "internal" not in page and "not defined" not in page


def test_feedback_files_one_per_submission(tmp_path):
    feedback.write_feedback(class_reports(), exports.output_names(KEYS), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alice__02_many_heads.html", "bob__01_one_head.html", "bob__02_many_heads.html", "carol__02_many_heads.html"]
    assert "could not be read as a notebook: invalid JSON" in (tmp_path / "carol__02_many_heads.html").read_text()


# ---------------------------------------------------------------------------
# Summary


def test_summary_distribution_hints_and_slowest():
    reports = class_reports()
    for seconds, r in zip([3.0, 9.0, 1.0, 0.5], reports):
        r["seconds"] = seconds
    reports[1]["timing"] = {"start": 2.5, "cells": 6.0, "runs": 1}
    data = summary.class_summary(reports)
    split = next(e for e in data["exercises"] if e["id"] == "split_heads")
    assert split["distribution"] == [[0.0, 1], [1.0, 1]] and split["graded"] == 2 and split["mean"] == 0.5
    assert data["hints"][0]["hint_id"] == "transposed_heads" and data["hints"][0]["count"] == 1
    assert [Path(s["file"]).parent.name for s in data["slowest"]][:2] == ["bob", "alice"]
    assert data["statuses"] == {"error": 1, "invalid-notebook": 1, "ok": 2}
    text = summary.summary_text(data)
    assert "transposed_heads" in text and "slowest notebooks" in text
    assert "  bob/02_many_heads.ipynb  (start 2.5, cells 6.0)" in text
    assert len(text.splitlines()) < 40 and max(map(len, text.splitlines())) <= 100
    assert json.loads(json.dumps(data)) == data


# ---------------------------------------------------------------------------
# The batch-system files under deploy/: run with a stand-in `mhacourse` that
# prints its arguments, as the batch system would run them.

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def run_with_stand_in(tmp_path, argv, env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "mhacourse").write_text("#!/bin/sh\necho \"$@\"\n")
    (bin_dir / "mhacourse").chmod(0o755)
    (tmp_path / "grading").mkdir(exist_ok=True)
    (tmp_path / "grading" / "secret").write_text("0" * 64)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "MHACOURSE": str(bin_dir / "mhacourse"), **env}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split()


def test_slurm_array_task_grades_its_shard_then_merge_joins_them(tmp_path):
    script = str(DEPLOY / "slurm.sbatch")
    task = run_with_stand_in(tmp_path, ["bash", script, "submissions/"],
                             {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_CPUS_PER_TASK": "2"})
    assert task[:4] == ["grade", "submissions/", "--shard", "3/8"]
    assert task[task.index("--out") + 1] == "grading/parts/grades-3.csv" and "--secret-file" in task
    (tmp_path / "grading" / "parts" / "grades-3.part.json").write_text("{}")
    merge = run_with_stand_in(tmp_path, ["bash", script, "merge"], {})
    assert merge[:3] == ["grade", "merge", "grading/parts/grades-3.part.json"]


def test_kubernetes_indexed_job_maps_completion_index_to_shard(tmp_path):
    yaml = pytest.importorskip("yaml")
    shards_job, merge_job = yaml.safe_load_all((DEPLOY / "k8s" / "jobs.yaml").read_text())
    spec = shards_job["spec"]
    assert spec["completionMode"] == "Indexed"  # parallelism and SHARDS: kustomize copies completions
    n = spec["completions"]
    container = spec["template"]["spec"]["containers"][0]
    seen = []
    for index in range(n):  # Kubernetes sets JOB_COMPLETION_INDEX = 0 .. completions - 1
        argv = run_with_stand_in(tmp_path, [*container["command"], *container["args"]],
                                 {"JOB_COMPLETION_INDEX": str(index), "SHARDS": str(n), "CPUS": "2"})
        seen.append(argv[argv.index("--shard") + 1])
    assert seen == [f"{k}/{n}" for k in range(1, n + 1)]
    (tmp_path / "grading" / "parts").mkdir(parents=True, exist_ok=True)
    (tmp_path / "grading" / "parts" / "grades-1.part.json").write_text("{}")
    container = merge_job["spec"]["template"]["spec"]["containers"][0]
    merge = run_with_stand_in(tmp_path, [*container["command"], *container["args"]], {})
    assert merge[:3] == ["grade", "merge", "grading/parts/grades-1.part.json"]


# ---------------------------------------------------------------------------
# The command line: `mhacourse grade ... --shard K/N` and `mhacourse grade merge`.


def fake_grade_many(paths, **options):
    """Reports from the file names alone: the CLI's plumbing without kernels."""
    reports = []
    for path in paths:
        lesson = Path(path).name[:2] if Path(path).name[:2].isdigit() else None
        seed = sum(Path(path).as_posix().encode())
        rows = [row(f"ex{lesson}_{j}", float((seed + j) % 2)) for j in range(2)] if lesson else []
        reports.append(report(path, lesson, rows, status="ok" if lesson else "unknown-lesson"))
    return reports


def tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_cli_shards_and_merge_write_what_one_run_writes(tmp_path, monkeypatch, capsys):
    from mhacourse.cli import main
    from mhacourse.grading.batch import cli

    monkeypatch.setattr(cli, "grade_many", fake_grade_many)
    monkeypatch.setenv(cli.SECRET_ENV, "one-secret-for-every-shard")
    make_class(tmp_path / "class", NAMES)
    monkeypatch.chdir(tmp_path)
    for folder in ("whole", "parts", "merged"):
        (tmp_path / folder).mkdir()
    outputs = ["--json", "{}/json", "--gradescope", "{}/gs", "--canvas", "{}/canvas.csv", "--feedback", "{}/fb"]
    assert main(["grade", "class", "--out", "whole/grades.csv", *(o.format("whole") for o in outputs)]) == 0
    whole = capsys.readouterr().err
    assert "score distribution per exercise" in whole and "slowest notebooks" in whole
    n = 3
    for k in range(1, n + 1):
        assert main(["grade", "class", "--shard", f"{k}/{n}", "--out", f"parts/grades-{k}.csv", "--no-summary"]) == 0
    assert main(["grade", "merge", *(f"parts/grades-{k}.csv" for k in range(n, 0, -1)),
                 "--out", "merged/grades.csv", *(o.format("merged") for o in outputs)]) == 0
    assert (tmp_path / "merged" / "grades.csv").read_bytes() == (tmp_path / "whole" / "grades.csv").read_bytes()
    # the same outputs; both record the run (the manifest --update reads), the merge also each notebook's shard
    outputs_of = {run: tree(tmp_path / run) for run in ("whole", "merged")}
    manifests = {run: json.loads(outputs_of[run].pop("mhacourse-run.json")) for run in outputs_of}
    assert outputs_of["merged"] == outputs_of["whole"]
    assert manifests["merged"].pop("shards") == n
    assert [entry.pop("shard") for entry in manifests["merged"]["submissions"]] == [
        shards.shard_of(entry["key"], n) for entry in manifests["whole"]["submissions"]]
    assert manifests["merged"] == manifests["whole"]
    assert len(tree(tmp_path / "whole" / "fb")) == len(NAMES) == len(tree(tmp_path / "whole" / "gs"))
    summary_json = json.loads((tmp_path / "whole" / "json" / "class-summary.json").read_text())
    assert summary_json["submissions"] == len(NAMES)


def test_cli_empty_shard_and_bad_merge(tmp_path, monkeypatch, capsys):
    from mhacourse.cli import main
    from mhacourse.grading.batch import cli

    monkeypatch.setattr(cli, "grade_many", fake_grade_many)
    monkeypatch.setenv(cli.SECRET_ENV, "one-secret-for-every-shard")
    make_class(tmp_path / "class", ["solo/01_x.ipynb"])
    monkeypatch.chdir(tmp_path)
    empty = next(k for k in (1, 2) if shards.shard_of("solo/01_x.ipynb", 2) != k)
    assert main(["grade", "class", "--shard", f"{empty}/2", "--out", "p.csv", "--no-summary"]) == 0
    assert json.loads(Path("p.part.json").read_text())["reports"] == []
    assert main(["grade", "merge", "p.csv", "--out", "g.csv"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["grade", "class", "--shard", "1/2", "--out", "-"]) == 2
    assert "--shard needs --out FILE" in capsys.readouterr().err
    assert main(["grade", "class", "--shard", "2/1", "--out", "x.csv"]) == 2
    assert "--shard" in capsys.readouterr().err
    monkeypatch.delenv(cli.SECRET_ENV)
    assert main(["grade", "class", "--shard", "1/2", "--out", "y.csv"]) == 2
    assert "--secret-file" in capsys.readouterr().err
    # Parts graded with different secrets never merge: those students met other hidden inputs.
    for k, secret in ((1, "a"), (2, "b")):
        monkeypatch.setenv(cli.SECRET_ENV, secret)
        assert main(["grade", "class", "--shard", f"{k}/2", "--out", f"mixed-{k}.csv", "--no-summary"]) == 0
    capsys.readouterr()
    assert main(["grade", "merge", "mixed-1.csv", "mixed-2.csv", "--out", "m.csv"]) == 2
    assert "different secrets" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# End to end: real grading of the project's fixture notebooks, sharded and not.

# One notebook that runs a kernel (twice: whole and sharded) keeps this quick; MHACOURSE_GRADE_ALL=1
# adds one with wrong answers (hints fire).
REAL_CASES = {"alice": "16_exception_cell", "carol": "05_invalid_json"}
if os.environ.get("MHACOURSE_GRADE_ALL") == "1":
    REAL_CASES["bob"] = "29_wrong_answers"


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """One unsharded run with every export, and the same class in shards, merged."""
    import importlib.util

    from mhacourse.cli import main

    root = tmp_path_factory.mktemp("class")
    maker = Path(__file__).parent / "fixtures" / "make_submissions.py"
    spec = importlib.util.spec_from_file_location("make_submissions", maker)
    make_submissions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_submissions)
    made = root / "made"
    made_names = make_submissions.make_submissions(made)
    lesson = json.loads((made / "expected.json").read_text())["lesson"]
    for student, case_name in REAL_CASES.items():
        name = next(name for name in made_names if name.endswith(f"__{case_name}.ipynb"))
        (root / "class" / student).mkdir(parents=True)
        (root / "class" / student / name).write_bytes((made / name).read_bytes())
    (root / "class" / "dan").mkdir()
    (root / "class" / "dan" / "homework.ipynb").write_bytes((made / "homework.ipynb").read_bytes())
    keys = [s.key for s in shards.collect([root / "class"])]
    n = next(n for n in (2, 3, 4, 5) if len({shards.shard_of(key, n) for key in keys}) > 1)
    (root / "secret").write_text("e2e-secret-" + "0" * 40)
    common = ["--jobs", "2", "--timeout", "60", "--no-progress", "--secret-file", str(root / "secret")]
    whole = root / "whole"
    whole.mkdir()
    assert main(["grade", str(root / "class"), *common, "--out", str(whole / "grades.csv"),
                 "--json", str(whole / "json"), "--gradescope", str(whole / "gs"), "--canvas",
                 str(whole / "canvas.csv"), "--feedback", str(whole / "fb"), "--no-summary"]) == 0
    (root / "parts").mkdir()
    for k in range(1, n + 1):
        assert main(["grade", str(root / "class"), *common, "--shard", f"{k}/{n}",
                     "--out", str(root / "parts" / f"grades-{k}.csv"), "--no-summary"]) == 0
    assert main(["grade", "merge", *map(str, sorted((root / "parts").glob("*.part.json"))),
                 "--out", str(root / "merged.csv"), "--no-summary"]) == 0
    reports = [json.loads(f.read_text()) for f in (whole / "json").glob("*.json") if f.name != "class-summary.json"]
    by_student = {Path(r["file"]).parent.name: r for r in reports}
    return {"root": root, "whole": whole, "lesson": lesson, "reports": by_student}


def test_real_sharded_run_merges_to_the_unsharded_csv(graded_class):
    whole = (graded_class["whole"] / "grades.csv").read_bytes()
    assert (graded_class["root"] / "merged.csv").read_bytes() == whole
    assert len(whole.decode().splitlines()) == 1 + len(REAL_CASES) + 1


def test_real_gradescope_results_validate(graded_class):
    files = {f.parent.name.split("__")[0]: f for f in (graded_class["whole"] / "gs").glob("*/results.json")}
    assert sorted(files) == sorted([*REAL_CASES, "dan"])
    for file in files.values():
        jsonschema.validate(json.loads(file.read_text()), SCHEMA)
    for student, report in graded_class["reports"].items():  # the same run's JSON reports
        results = json.loads(files[student].read_text())
        rows = [*report["exercises"], *report.get("written", [])]  # written answers: 0 until graded by hand
        assert [t["name"].split(":")[0] for t in results["tests"]] == [row["id"] for row in rows]
        assert [t["score"] for t in results["tests"]] == [row["points"] for row in rows]
        assert results["score"] == report["total"] == sum(t["score"] for t in results["tests"])
    assert graded_class["reports"]["alice"]["total"] > 0
    assert "raised an error" in json.loads(files["alice"].read_text())["output"]
    assert "could not be read as a notebook" in json.loads(files["carol"].read_text())["output"]


def test_real_canvas_csv_and_feedback(graded_class):
    rows = read_csv((graded_class["whole"] / "canvas.csv").read_text())
    lesson = f"Lesson {graded_class['lesson']}"
    assert rows[0] == [*exports.CANVAS_FIXED_COLUMNS, lesson]
    by_student = {r[0]: r[-1] for r in rows[2:]}
    assert sorted(by_student) == sorted([*REAL_CASES, "dan"])
    assert by_student["alice"] == f"{graded_class['reports']['alice']['total']:g}"
    assert by_student["carol"] == "" and by_student["dan"] == ""  # not graded: left empty, never 0
    page = (graded_class["whole"] / "fb" / f"{next((graded_class['whole'] / 'fb').glob('alice*')).name}").read_text()
    assert "raised an error" in page and "Every check passed" not in page
    carol = next((graded_class["whole"] / "fb").glob("carol*")).read_text()
    assert "could not be read as a notebook" in carol
