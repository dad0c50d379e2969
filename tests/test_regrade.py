"""Regrade one student into the class results: ``mhacourse grade --update RESULTS_DIR submissions/alice``.

A class of three (two notebooks that run, one that is not JSON; one student's
name accented) is graded once, and again in two shards merged,
with every output into one results folder; alice then fixes her notebook and is
regraded alone, by her single notebook (keyed by her folder, as in the run).
Every output must change in alice's rows only; another secret is refused.
"""

import csv
import importlib.util
import io
import json
from pathlib import Path

import pytest

from mhacourse.cli import main
from mhacourse.grading.batch import cli, update

FIXTURES = Path(__file__).parent / "fixtures" / "make_submissions.py"
CASES = {"alice": "02_untouched", "bob": "05_invalid_json", "chloé": "03_partial"}  # an accented name too


def _maker():
    spec = importlib.util.spec_from_file_location("make_submissions", FIXTURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(results):
    """Every file under the results folder: ``{relative path: bytes}``."""
    return {p.relative_to(results).as_posix(): p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}


def csv_rows(data):
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def make_class(root):
    """The class of three under ``root / "class"`` and the secret; returns the fixtures' file names by case."""
    made = root / "made"
    names = _maker().make_submissions(made)
    name = {case: next(n for n in names if n.endswith(f"__{case}.ipynb")) for case in (*CASES.values(), "01_full")}
    for student, case in CASES.items():
        (root / "class" / student).mkdir(parents=True)
        (root / "class" / student / name[case]).write_bytes((made / name[case]).read_bytes())
    (root / "secret").write_text("regrade-secret-" + "1" * 32)
    return name


def outputs(results):
    """Every output option, into ``results``."""
    return ["--json", str(results / "json"), "--canvas", str(results / "canvas.csv"), "--gradescope",
            str(results / "gradescope"), "--feedback", str(results / "feedback")]


def fix_and_regrade_alice(root, results, name):
    """alice fixes her notebook; she alone is regraded, by the notebook itself."""
    notebook = root / "class" / "alice" / name[CASES["alice"]]
    notebook.write_bytes((root / "made" / name["01_full"]).read_bytes())
    assert main(["grade", "--update", str(results), str(notebook), "--jobs", "2", "--no-progress",
                 "--secret-file", str(root / "secret")]) == 0


@pytest.fixture(scope="module")
def regraded(tmp_path_factory):
    root = tmp_path_factory.mktemp("regrade")
    name = make_class(root)
    results = root / "results"
    results.mkdir()
    argv = ["grade", str(root / "class"), "--jobs", "2", "--no-progress", "--no-summary", "--secret-file",
            str(root / "secret"), "--out", str(results / "grades.csv"), *outputs(results)]
    assert main(argv) == 0
    before = snapshot(results)
    fix_and_regrade_alice(root, results, name)
    return {"root": root, "results": results, "before": before, "after": snapshot(results)}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, regraded):
    """The same class graded in two shards and merged (every output), then alice regraded into the merge."""
    root = tmp_path_factory.mktemp("sharded")
    name = make_class(root)
    parts, results = root / "parts", root / "results"
    parts.mkdir()
    results.mkdir()
    for k in (1, 2):
        assert main(["grade", str(root / "class"), "--shard", f"{k}/2", "--no-progress", "--no-summary",
                     "--secret-file", str(root / "secret"), "--out", str(parts / f"grades-{k}.csv")]) == 0
    assert main(["grade", "merge", str(parts / "grades-1.csv"), str(parts / "grades-2.csv"), "--no-summary",
                 "--out", str(results / "grades.csv"), *outputs(results)]) == 0
    before = snapshot(results)
    fix_and_regrade_alice(root, results, name)
    return {"root": root, "results": results, "before": before, "after": snapshot(results)}


def test_every_run_with_out_writes_a_manifest_without_the_secret(regraded):
    manifest = json.loads(regraded["before"][update.MANIFEST_NAME])
    assert manifest["secret"] and "regrade-secret" not in regraded["before"][update.MANIFEST_NAME].decode()
    assert [entry["key"].split("/")[0] for entry in manifest["submissions"]] == sorted(CASES)
    assert manifest["options"]["json_dir"] == "json" and manifest["options"]["canvas"] == "canvas.csv"


@pytest.mark.parametrize("run", ["regraded", "sharded"])
def test_only_alices_rows_change_in_every_output(run, request):
    before, after = request.getfixturevalue(run)["before"], request.getfixturevalue(run)["after"]
    assert set(before) == set(after)
    changed = {path for path in before if before[path] != after[path]}
    # alice's own files, and the class-wide tables (checked row by row below)
    for path in changed - {"grades.csv", "canvas.csv", "json/class-summary.json"}:
        assert "alice" in path or path.startswith("manual/"), path
    assert {p for p in changed if "alice" in p} == {p for p in before if "alice" in p and not p.startswith("manual/")}
    for table, first in (("grades.csv", 1), ("canvas.csv", 2)):
        old, new = csv_rows(before[table]), csv_rows(after[table])
        assert old[:first] == new[:first] and len(old) == len(new)
        for old_row, new_row in zip(old[first:], new[first:]):
            student = old_row[0].split("/")[-2] if table == "grades.csv" else old_row[0]
            assert (old_row != new_row) == (student == "alice"), (table, old_row, new_row)


@pytest.mark.parametrize("run", ["regraded", "sharded"])
def test_the_regraded_report_is_alices_fixed_notebook(run, request):
    regraded = request.getfixturevalue(run)
    after = regraded["after"]
    report = json.loads(next(after[p] for p in after if p.startswith("json/alice")))
    old = json.loads(next(regraded["before"][p] for p in regraded["before"] if p.startswith("json/alice")))
    assert old["total"] == 0 and report["total"] == report["max"] > 0 and report["status"] == "ok"
    assert report["file"] == old["file"]
    canvas = {row[0]: row[-1] for row in csv_rows(after["canvas.csv"])[2:]}
    assert canvas["alice"] == f"{report['total'] + report['written_total']:g}"  # keyed by her folder
    results = json.loads(next(after[p] for p in after if p.startswith("gradescope/alice")))
    assert results["score"] == report["total"]
    assert b"Every check passed" in next(after[p] for p in after if p.startswith("feedback/alice"))


def test_a_regrade_with_another_secret_or_none_is_refused(regraded, capsys, monkeypatch):
    results, root = regraded["results"], regraded["root"]
    alice = root / "class" / "alice"
    monkeypatch.delenv(cli.SECRET_ENV, raising=False)
    (root / "other").write_text("not-the-run's-secret")
    capsys.readouterr()
    assert main(["grade", "--update", str(results), str(alice), "--no-progress", "--secret-file",
                 str(root / "other")]) == 2
    assert "secret differs from the run's" in capsys.readouterr().err
    assert main(["grade", "--update", str(results), str(alice), "--no-progress"]) == 2
    assert "needs the run's secret" in capsys.readouterr().err
    monkeypatch.setenv(cli.SECRET_ENV, "also-not-it")
    assert main(["grade", "--update", str(results), str(alice), "--no-progress"]) == 2
    assert "secret differs" in capsys.readouterr().err
    assert snapshot(results) == regraded["after"]


def test_a_regrade_refuses_notebooks_outside_the_run(regraded, capsys, tmp_path):
    stranger = tmp_path / "dave"
    stranger.mkdir()
    (stranger / "01_x.ipynb").write_text("{}")
    secret = str(regraded["root"] / "secret")
    assert main(["grade", "--update", str(regraded["results"]), str(stranger), "--secret-file", secret]) == 2
    assert "not inside the run's class folder" in capsys.readouterr().err
    assert main(["grade", "--update", str(tmp_path), str(stranger), "--secret-file", secret]) == 2
    assert "holds no mhacourse-run.json" in capsys.readouterr().err


def test_a_merged_run_writes_a_manifest_naming_the_shard_of_each_notebook(sharded, regraded):
    from mhacourse.grading.classroom import shards

    manifest = json.loads(sharded["before"][update.MANIFEST_NAME])
    whole = json.loads(regraded["before"][update.MANIFEST_NAME])
    assert manifest["shards"] == 2 and manifest["secret"] == whole["secret"]
    assert [entry["key"] for entry in manifest["submissions"]] == [entry["key"] for entry in whole["submissions"]]
    assert {entry["shard"] for entry in manifest["submissions"]} == {1, 2}
    for entry in manifest["submissions"]:
        assert entry["shard"] == shards.shard_of(entry["key"], 2) and entry["root"] == 0
    assert manifest["options"] == whole["options"]  # the same outputs, the same grading options
    # Graded in shards or whole, the regraded class exports the same scores.
    assert sharded["after"]["canvas.csv"] == regraded["after"]["canvas.csv"]
