"""``mhacourse gradescope build OUT.zip``: the course as a Gradescope autograder.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once
on its Ubuntu image, then, per submission, ``run_autograder`` with the
student's files in ``/autograder/submission/``, their metadata in
``/autograder/submission_metadata.yml`` (or ``.json``), and expects
``/autograder/results/results.json``. The bundle holds:

``setup.sh``
    installs Debian's ``bubblewrap`` (the sandbox) and ``libopenblas0-pthread``
    (a fast BLAS for MLX), then the course wheel it carries into
    ``/autograder/venv``.
``run_autograder``
    ``mhacourse gradescope run``: grades ``submission/*.ipynb`` with the grade
    command and writes ``results/results.json``.
``mhacourse-*.whl``
    the course, built from this checkout (``pip wheel --no-deps``).
``secret``
    the hidden inputs' secret (``--secret-file``, else a fresh one): every
    student of the assignment is graded on the same hidden cases.
``autograder.json``
    the options: ``visibility``, ``timeout``, ``lesson``, ``late_policy``.

Every path is under ``$AUTOGRADER_ROOT`` (default ``/autograder``), so the
whole layout can be replayed in a temporary folder. Where bubblewrap cannot
run inside Gradescope's container (no user namespaces), the notebook is
graded with ``--no-sandbox`` and the results say so: a line in ``output`` and
the flag ``unsandboxed`` in ``extra_data``; it never fails the submission.
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from mhacourse.grading.classroom.exports import VISIBILITIES

ROOT_ENV = "AUTOGRADER_ROOT"
DEFAULT_ROOT = "/autograder"
CONFIG_NAME = "autograder.json"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, on its Ubuntu image, from /autograder/source.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends bubblewrap libopenblas0-pthread python3 python3-venv python3-pip
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --upgrade pip
WHEEL="$(ls "$ROOT"/source/mhacourse-*.whl | head -n 1)"
"$ROOT/venv/bin/python" -m pip install "${WHEEL}[grading]"
"$ROOT/venv/bin/mhacourse" gradescope check --root "$ROOT" || true  # says whether the sandbox runs here
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this per submission: grade /autograder/submission/*.ipynb -> /autograder/results/results.json
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
MHACOURSE="${MHACOURSE:-$ROOT/venv/bin/mhacourse}"
exec "$MHACOURSE" gradescope run --root "$ROOT"
"""


def configure(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write the autograder zip Gradescope expects",
                               description="write the autograder zip Gradescope expects")
    build.add_argument("out", metavar="OUT.zip", help="the zip to write")
    build.add_argument("--visibility", default="after_published", choices=VISIBILITIES,
                       help="when students see their results (default: after_published)")
    build.add_argument("--secret-file", default=None, metavar="FILE",
                       help="the hidden inputs' secret (default: a fresh random one, written into the zip)")
    build.add_argument("--lesson", default=None, help="grade every submission as this lesson (e.g. 02)")
    build.add_argument("--timeout", type=float, default=60, help="seconds allowed per cell (default: 60)")
    build.add_argument("--late-policy", default="none", metavar="POLICY",
                       help="none (default), zero, or percent:N per day late (days from Gradescope's metadata)")
    build.add_argument("--wheel", default=None, metavar="WHL",
                       help="a course wheel already built (default: build one from this checkout)")
    run = actions.add_parser("run", help="what run_autograder does: grade the submission, write results.json")
    run.add_argument("--root", default=None, help=f"the autograder folder (default: ${ROOT_ENV}, else {DEFAULT_ROOT})")
    check = actions.add_parser("check", help="say whether the sandbox (bubblewrap) runs here")
    check.add_argument("--root", default=None, help=argparse.SUPPRESS)


def run(args):
    from mhacourse.grading import textio

    try:
        if args.action == "build":
            path = build_bundle(args.out, visibility=args.visibility, secret_file=args.secret_file,
                                lesson=args.lesson, timeout=args.timeout, late_policy=args.late_policy,
                                wheel=args.wheel)
            print(f"wrote {path}: upload it as the assignment's autograder (Configure Autograder → Zip file)",
                  file=sys.stderr)
            return 0
        if args.action == "check":
            from mhacourse.grading.batch import isolation

            ok = isolation.bwrap_available()
            print("sandbox: bubblewrap runs here" if ok else
                  "sandbox: bubblewrap cannot run here; submissions will be graded unsandboxed (flagged)",
                  file=sys.stderr)
            return 0 if ok else 1
        return run_autograder(args.root)
    except (ValueError, OSError, subprocess.CalledProcessError) as error:
        print(f"error: {textio.printable(error)}", file=sys.stderr)
        return 2


def project_root():
    """The checkout this package runs from (where ``pyproject.toml`` is), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() and (root / "mhacourse").is_dir() else None


def build_wheel(out_dir):
    """The course wheel, built from the checkout with ``pip wheel --no-deps`` (offline, no build isolation)."""
    root = project_root()
    if root is None:
        raise ValueError("gradescope build needs the course's checkout to build its wheel; give --wheel FILE")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(out_dir), str(root)], check=True, capture_output=True)
    wheels = sorted(Path(out_dir).glob("mhacourse-*.whl"))
    if not wheels:
        raise ValueError("pip wheel wrote no mhacourse wheel")
    return wheels[-1]


def build_bundle(out, *, visibility="after_published", secret_file=None, lesson=None, timeout=60,
                 late_policy="none", wheel=None):
    """Write the autograder zip (contents in the module docstring); return its path."""
    from mhacourse.grading.batch.cli import read_secret
    from mhacourse.grading.classroom.identity import parse_late_policy

    if visibility not in VISIBILITIES:
        raise ValueError(f"--visibility must be one of {', '.join(VISIBILITIES)}; got {visibility!r}")
    parse_late_policy(late_policy)
    out = Path(out)
    if out.suffix != ".zip":
        raise ValueError(f"OUT must end in .zip, got {str(out)!r}")
    secret = read_secret(secret_file) if secret_file else secrets.token_hex(16)
    config = {"visibility": visibility, "timeout": float(timeout), "lesson": lesson, "late_policy": late_policy}
    with tempfile.TemporaryDirectory(prefix="mhacourse-gradescope-") as folder:
        wheel = Path(wheel) if wheel else build_wheel(folder)
        if not wheel.is_file():
            raise ValueError(f"--wheel {str(wheel)!r} does not exist")
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o100755 << 16  # executable, as Gradescope runs them
                bundle.writestr(info, text)
            info = zipfile.ZipInfo("secret")
            info.external_attr = 0o100600 << 16
            bundle.writestr(info, secret + "\n")
            bundle.writestr(CONFIG_NAME, json.dumps(config, indent=1) + "\n")
            bundle.write(wheel, wheel.name)
    return out


def _root(root=None):
    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _write_results(root, results):
    folder = root / "results"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def run_autograder(root=None):
    """Grade ``ROOT/submission/*.ipynb`` and write ``ROOT/results/results.json``; 0 once it is written."""
    from mhacourse.grading.batch import isolation
    from mhacourse.grading.batch.cli import read_secret
    from mhacourse.grading.batch.pool import grade_many
    from mhacourse.grading.classroom.exports import gradescope_results
    from mhacourse.grading.classroom.identity import identify

    root = _root(root)
    source = root / "source"
    config = json.loads((source / CONFIG_NAME).read_text(encoding="utf-8")) if (source / CONFIG_NAME).is_file() else {}
    visibility = config.get("visibility") or "after_published"
    notebooks = sorted(p for p in (root / "submission").rglob("*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts) if (root / "submission").is_dir() else []
    if not notebooks:
        _write_results(root, {"score": 0.0, "output": "No notebook (.ipynb) was found in the submission: upload "
                              "the exercise notebook itself.", "output_format": "text", "visibility": visibility,
                              "stdout_visibility": "hidden", "tests": []})
        return 0
    sandbox = isolation.bwrap_available()
    secret_file = source / "secret"
    secret = read_secret(secret_file) if secret_file.is_file() else None
    reports = grade_many(notebooks, jobs=1, timeout=float(config.get("timeout") or 60), lesson=config.get("lesson"),
                         progress=False, secret=secret, sandbox=sandbox)
    who = identify(notebooks[0], notebooks[0].name).as_dict()
    metadata = next((root / name for name in ("submission_metadata.yml", "submission_metadata.json")
                     if (root / name).is_file()), None)
    if metadata is not None:
        from mhacourse.grading.classroom.identity import read_metadata

        found = read_metadata(metadata)
        who = found.as_dict() if found is not None else who
    for report in reports:
        report["student"] = who
    parts = [gradescope_results(report, visibility=visibility, late_policy=config.get("late_policy") or "none")
             for report in reports]
    results = parts[0] if len(parts) == 1 else _combine(parts, notebooks)
    flags = sorted({flag for report in reports for flag in report.get("flags") or []})
    if not sandbox:
        results["output"] += ("\nNote: graded without the sandbox (bubblewrap cannot run in this container); "
                              "your instructor is told.")
    if flags:
        results["extra_data"] = {"flags": flags}
    _write_results(root, results)
    print(f"graded {len(notebooks)} notebook(s): {results['score']:g} points"
          + (f"; flags: {', '.join(flags)}" if flags else ""), file=sys.stderr)
    return 0


def _combine(parts, notebooks):
    """Several notebooks in one submission: every test, each file's summary, the scores added."""
    results = dict(parts[0])
    results["tests"] = [test for part in parts for test in part["tests"]]
    results["score"] = sum(part["score"] for part in parts)
    results["output"] = "\n\n".join(f"{path.name}: {part['output']}" for path, part in zip(notebooks, parts))
    results["execution_time"] = sum(part.get("execution_time", 0) for part in parts)
    return results


def which_mhacourse():
    """The ``mhacourse`` command beside this Python (for tests replaying ``run_autograder``)."""
    return shutil.which("mhacourse", path=str(Path(sys.executable).parent)) or shutil.which("mhacourse")
