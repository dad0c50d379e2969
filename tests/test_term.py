"""Issue 18, end to end: a term's class, graded for real, round-trips to Canvas and Gradescope.

One run of the real grader (``--jobs 2``) over two class folders, one in Canvas's "Download
submissions" layout and one in Gradescope's export layout (with ``submission_metadata.yml``),
with a roster: every student is matched or listed, Canvas's column rules hold, ``results.json``
validates, a print flood is one cell's problem at most. Then the Gradescope autograder bundle is
built and replayed under a temporary ``AUTOGRADER_ROOT``: a solved notebook through
``run_autograder`` itself (sandboxed), an unsolved one where bubblewrap is missing (flagged).
"""

import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from mhacourse.grading.classroom import autograder

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "gradescope_results.schema.json").read_text())
FLOOD = "for _ in range(300):\n    print('x' * 1_000_000)"  # 300 MB to stdout
ROSTER = ("Student,ID,SIS User ID,SIS Login ID,Section\n"
          "    Points Possible,,,,\n"
          "\"García, José\",4021,S1,jgarcia,A\n"
          "Renée Dubois,4022,S2,rdubois,A\n"
          "Ana Pérez,4023,900123,ana@uni.edu,B\n"
          "Bo Li,4024,900124,bo@uni.edu,B\n")
GS_METADATA = """\
submission_111:
  :created_at: 2026-10-01 22:00:00.000000000 +00:00
  :assignment:
    :due_date: 2026-10-01 23:00:00.000000000 +00:00
  :submitters:
  - :name: Ana Pérez
    :sid: '900123'
    :email: ana@uni.edu
submission_112:
  :created_at: 2026-10-03 12:00:00.000000000 +00:00
  :assignment:
    :due_date: 2026-10-01 23:00:00.000000000 +00:00
  :submitters:
  - :name: Bo Li
    :sid: '900124'
    :email: bo@uni.edu
"""


def _fixtures(folder):
    maker = Path(__file__).parent / "fixtures" / "make_submissions.py"
    spec = importlib.util.spec_from_file_location("make_submissions", maker)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = module.make_submissions(folder)
    return {name.split("__")[-1].removesuffix(".ipynb"): folder / name for name in names}, module


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    from mhacourse.cli import main

    root = tmp_path_factory.mktemp("term")
    made, module = _fixtures(root / "made")
    stem = next(iter(made.values())).name.split("__")[0]  # 02_many_heads or the like
    solved = json.loads(made["01_full"].read_text())
    flood = json.loads(made["01_full"].read_text())
    flood["cells"].insert(len(flood["cells"]) - 1, {"cell_type": "code", "id": "flood", "metadata": {},
                                                    "execution_count": None, "outputs": [], "source": FLOOD})
    canvas, gs = root / "canvas", root / "gradescope"
    canvas.mkdir()
    (canvas / f"jgarcia_4021_101_{stem}.ipynb").write_text(json.dumps(solved))
    (canvas / f"rdubois_LATE_4022_102_{stem}.ipynb").write_text(json.dumps(flood))
    (canvas / "stranger").mkdir()  # a folder the roster does not know
    (canvas / "stranger" / f"{stem}.ipynb").write_bytes(made["05_invalid_json"].read_bytes())
    for folder, case in (("submission_111", "02_untouched"), ("submission_112", "29_wrong_answers")):
        (gs / folder).mkdir(parents=True)
        (gs / folder / f"{stem}.ipynb").write_bytes(made[case].read_bytes())
    (gs / "submission_metadata.yml").write_text(GS_METADATA, encoding="utf-8")
    (root / "roster.csv").write_text(ROSTER, encoding="utf-8")
    (root / "secret").write_text("term-secret-" + "1" * 32)
    out = root / "out"
    argv = ["grade", str(canvas), str(gs), "--roster", str(root / "roster.csv"), "--jobs", "2", "--no-progress",
            "--secret-file", str(root / "secret"), "--out", str(out / "grades.csv"), "--json", str(out / "json"),
            "--canvas", str(out / "canvas.csv"), "--gradescope", str(out / "gs"), "--feedback", str(out / "fb"),
            "--late-policy", "percent:10"]
    out.mkdir()
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(argv)
    assert status == 0, err.getvalue()
    rows = list(csv.DictReader((out / "grades.csv").open(encoding="utf-8")))
    return {"root": root, "out": out, "stderr": err.getvalue(), "rows": rows, "stem": stem, "made": made}


def by_file(term, part):
    """The grades.csv row of the one submission whose path holds ``part``."""
    (found,) = [row for row in term["rows"] if part in row["file"]]
    return found


def test_every_student_is_matched_or_listed(term):
    students = {prefix: by_file(term, prefix)["student"] for prefix in
                ("jgarcia", "rdubois", "submission_111", "submission_112", "stranger")}
    # The Canvas user id wherever one is known (the roster gives it to Gradescope's students too).
    assert students == {"jgarcia": "4021", "rdubois": "4022", "submission_111": "4023",
                        "submission_112": "4024", "stranger": ""}
    assert "unmatched" in by_file(term, "stranger")["flags"]
    listed = term["stderr"].split("matched to no student")[1]
    assert "stranger" in listed and "jgarcia" not in listed
    assert by_file(term, "rdubois")["late"] == "late" and by_file(term, "submission_112")["late"] == "late 2 days"
    assert by_file(term, "jgarcia")["late"] == "" and by_file(term, "submission_111")["late"] == ""


def test_canvas_column_rules(term):
    rows = list(csv.reader(io.StringIO((term["out"] / "canvas.csv").read_text(encoding="utf-8"))))
    assert rows[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert rows[1][0].strip() == "Points Possible" and all(cell for cell in rows[1][5:])
    body = {r[0]: r for r in rows[2:]}
    full = by_file(term, "jgarcia")["total"]
    assert body["García, José"][1:5] == ["4021", "S1", "jgarcia", "A"] and body["García, José"][5] == full
    late = float(by_file(term, "rdubois")["total"]) * 0.9  # LATE_, days unknown: one day, 10 %
    assert body["Renée Dubois"][1] == "4022" and float(body["Renée Dubois"][5]) == pytest.approx(late)
    assert body["Ana Pérez"][1:4] == ["4023", "900123", "ana@uni.edu"]
    stranger = next(r for name, r in body.items() if name.startswith("UNMATCHED"))
    assert stranger[1:] == ["", "", "", "", ""]  # no id, and an empty grade: never 0


def test_a_print_flood_is_at_most_one_cells_problem(term):
    report = json.loads(next((term["out"] / "json").rglob("*rdubois*.json")).read_text())
    failed = [cell for cell in report["cells"] if cell["status"] != "ok"]
    assert len(failed) <= 1 and "File too large" not in report["detail"], report["detail"]
    assert report["total"] == report["max"] > 0


def test_results_json_validate_and_show_expected_vs_got(term):
    files = sorted((term["out"] / "gs").glob("*/results.json"))
    assert len(files) == 5
    for file in files:
        jsonschema.validate(json.loads(file.read_text()), SCHEMA)
    wrong = json.loads(next(f for f in files if "submission_112" in str(f)).read_text())
    assert "expected: " in wrong["tests"][0]["output"] and "got: " in wrong["tests"][0]["output"]
    page = next((term["out"] / "fb").glob("*submission_112*")).read_text()
    assert "expected: " in page and "got: " in page


def _replay(tmp_path, bundle, notebook, metadata):
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "submission" / notebook.name).write_bytes(notebook.read_bytes())
    (root / "submission_metadata.yml").write_text(metadata, encoding="utf-8")
    return root


def test_gradescope_autograder_bundle_replayed(term, tmp_path, monkeypatch):
    bundle = autograder.build_bundle(tmp_path / "autograder.zip", visibility="after_due_date",
                                     secret_file=term["root"] / "secret")
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        setup = archive.read("setup.sh").decode()
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        assert archive.read("secret").decode().strip() == (term["root"] / "secret").read_text().strip()
    assert {"setup.sh", "run_autograder", "secret", "autograder.json"} <= set(names)
    assert any(name.startswith("mhacourse-") and name.endswith(".whl") for name in names)
    assert "apt-get install" in setup and "bubblewrap" in setup and "libopenblas0-pthread" in setup
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    one = ":users:\n- :email: ana@uni.edu\n  :name: Ana Pérez\n  :sid: '900123'\n"

    # Solved, through run_autograder itself, with the sandbox where bubblewrap runs.
    root = _replay(tmp_path / "solved", bundle, term["made"]["01_full"], one)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "MHACOURSE": str(Path(sys.executable).parent / "mhacourse")}
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    from mhacourse.grading.registry import number_of

    auto = [t for t in results["tests"] if number_of(t["name"].split(":")[0])]  # written answers wait for a person
    assert results["score"] > 0 and auto and all(t["status"] == "passed" for t in auto)
    assert results["visibility"] == "after_due_date" and results["output_format"] == "text"
    assert [t["number"] for t in auto] == [number_of(t["name"].split(":")[0]) for t in auto]

    # Unsolved, where bubblewrap cannot run: graded unsandboxed and flagged, never failed.
    from mhacourse.grading.batch import isolation

    monkeypatch.setattr(isolation, "bwrap_available", lambda: False)
    root = _replay(tmp_path / "unsolved", bundle, term["made"]["02_untouched"], one)
    assert autograder.run_autograder(root) == 0
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    assert results["score"] == 0 and results["tests"] and "without the sandbox" in results["output"]
    assert "unsandboxed" in results["extra_data"]["flags"]


def test_an_empty_submission_still_writes_results(tmp_path):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    assert autograder.run_autograder(root) == 0
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    assert results["score"] == 0 and "No notebook" in results["output"]
