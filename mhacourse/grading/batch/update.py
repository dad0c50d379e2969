"""Regrade one student into the class results: ``mhacourse grade --update RESULTS_DIR submissions/alice``.

**The results folder.** RESULTS_DIR is the folder of ``--out``; grade a class as ::

    mhacourse grade submissions --secret-file secret --out results/grades.csv --json results/json \\
        [--canvas results/canvas.csv --gradescope results/gradescope --feedback results/feedback]

Every unsharded run with ``--out FILE`` writes the manifest ``mhacourse-run.json``
beside the CSV, and so does ``mhacourse grade merge --out FILE`` for a sharded
run (its entries also name the shard that graded each submission): the hash of
the secret (never the secret), where the secret came from, the class folders
given (absolute), the options that shape the outputs
(``--json``, ``--canvas`` and its columns, ``--gradescope``, ``--feedback``,
``--manual``, ``--student-id``, ``--timeout``, ``--lesson``, ``--no-sandbox``;
paths inside RESULTS_DIR relative to it, so the folder can move), and per
submission its key, its report's ``file``, its JSON report's name and its
student code (:mod:`mhacourse.grading.classroom.manual`).

**A regrade** needs that run's JSON reports (``--json``) and its secret
(``--secret-file`` or ``MHACOURSE_GRADE_SECRET``; refused, naming both hashes,
when it differs from the run's). Each notebook given (a student's folder or
one notebook) is keyed relative to the class folder the manifest records, so
``submissions/alice/02_many_heads.ipynb`` is ``alice/02_many_heads.ipynb``, the
student ``alice``, as in the whole run. Only notebooks the run graded can be
regraded. Their reports replace the old ones (written answers already graded
by hand keep their score when the answer is unchanged), and every output is
rewritten from the class's reports in the run's order by the functions that
wrote it: other students' rows and files come out byte for byte the same.
"""

import json
import sys
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

from mhacourse.grading import textio

MANIFEST_NAME = "mhacourse-run.json"
MANIFEST_FORMAT = "mhacourse-grade-run"
MANIFEST_VERSION = 1
_PATH_OPTIONS = ("out", "json_dir", "canvas", "gradescope", "feedback", "manual")
_OTHER_OPTIONS = ("canvas_columns", "canvas_id_column", "student_id", "show_names", "timeout", "lesson", "no_sandbox")


def _stored(path, folder):
    if path in (None, "-"):
        return path
    path = Path(path).absolute()
    try:
        return path.relative_to(folder.absolute()).as_posix()
    except ValueError:
        return str(path)


def write_manifest(args, reports, secret_hash, secret_given):
    """Write RESULTS_DIR/mhacourse-run.json for a finished unsharded run with ``--out FILE``."""
    from mhacourse.grading.classroom import collected, shards

    if getattr(args, "out", None) in (None, "-") or getattr(args, "shard", None) is not None:
        return None
    submissions = collected(args)
    return _write_manifest(args, reports, [s.key for s in submissions], shards.roots_of(args.submissions),
                           [s.root for s in submissions], secret_hash, "given" if secret_given else "fresh",
                           shards.grading_options(args))


def write_merged_manifest(args, merged):
    """Write the manifest of a merged sharded run: a regrade and hand grading work on it as on one run's.

    Each submission's entry also names the shard that graded it. Parts
    written before shards recorded their class folders (version 1) leave no
    manifest (``None``).

    Args:
        args (argparse.Namespace): ``mhacourse grade merge``'s arguments (its outputs).
        merged (Merged): :func:`mhacourse.grading.classroom.shards.merge`'s result.
    """
    if getattr(args, "out", None) in (None, "-") or merged.roots is None or not merged.secret:
        return None
    return _write_manifest(args, merged.reports, merged.keys, merged.roots, merged.root_of, merged.secret, "given",
                           merged.grading, shard_of=merged.shard_of, shards=merged.shards)


def _write_manifest(args, reports, keys, roots, root_of, secret_hash, secret_source, grading, shard_of=None,
                    shards=None):
    from mhacourse.grading.classroom import manual

    from .outputs import _json_names

    folder = Path(args.out).parent
    names = _json_names(reports)
    codes = manual.student_codes(keys, secret_hash, getattr(args, "student_id", None))
    entries = []
    for position, (key, report) in enumerate(zip(keys, reports)):
        entry = {"key": key, "root": root_of[position], "file": report["file"], "json": names[id(report)],
                 "code": codes[position]}
        if shard_of is not None:
            entry["shard"] = shard_of[position]
        entries.append(entry)
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "secret": secret_hash,
        "secret_source": secret_source, "roots": roots,
        "options": {**{name: _stored(getattr(args, name, None), folder) for name in _PATH_OPTIONS},
                    **{name: getattr(args, name, None) for name in _OTHER_OPTIONS}, **(grading or {})},
        "submissions": entries,
    }
    if shards is not None:
        manifest["shards"] = shards
    manifest["options"]["manual"] = _stored(manual.folder_for(args), folder)
    path = folder / MANIFEST_NAME
    textio.write_text(path, json.dumps(manifest, indent=1) + "\n")
    return path


@dataclass
class Results:
    """A run's results folder, read back: its manifest and every report, in the run's order."""

    folder: Path
    manifest: dict
    reports: list
    keys: list
    codes: list

    def path(self, option):
        value = self.manifest["options"].get(option)
        if value in (None, "-"):
            return value
        value = Path(value)
        return value if value.is_absolute() else self.folder / value

    def output_args(self, no_summary=True):
        """The run's output options, as :func:`mhacourse.grading.classroom.write_outputs` reads them."""
        options = self.manifest["options"]
        return Namespace(
            out=str(self.path("out")), json_dir=self.path("json_dir"), canvas=self.path("canvas"),
            gradescope=self.path("gradescope"), feedback=self.path("feedback"), manual=self.path("manual"),
            canvas_columns=options.get("canvas_columns") or "lesson", canvas_id_column=options.get("canvas_id_column"),
            student_id=options.get("student_id"), show_names=bool(options.get("show_names")),
            secret_hash=self.manifest.get("secret"), shard=None, no_summary=no_summary)


def load(folder):
    """Read RESULTS_DIR's manifest and JSON reports.

    Raises:
        ValueError: no manifest, a manifest of another format, or a run without JSON reports.
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ValueError(f"--update {str(folder)!r} is not a folder: give the folder of the run's --out")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"--update {str(folder)!r} holds no {MANIFEST_NAME}: give the folder of the --out of a "
                         "whole run, or of `mhacourse grade merge` for a sharded one; both write it") from None
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path} is not a manifest this version of mhacourse reads")
    results = Results(folder, manifest, [], [], [])
    json_dir = results.path("json_dir")
    if json_dir is None:
        raise ValueError(f"the run in {str(folder)!r} kept no JSON reports: grade the class with --json "
                         f"{folder / 'json'} to regrade or merge into it")
    for entry in manifest["submissions"]:
        try:
            results.reports.append(json.loads((json_dir / entry["json"]).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            raise ValueError(f"the JSON report {str(json_dir / entry['json'])!r} of {entry['key']!r} is missing or "
                             "unreadable") from None
        results.keys.append(entry["key"])
        results.codes.append(entry["code"])
    return results


def write_all(results, *, no_summary=True):
    """Rewrite every output of the run from ``results.reports``: CSV, JSON, exports, feedback, written answers."""
    from mhacourse.grading import classroom
    from mhacourse.grading.classroom import manual

    from .outputs import write_reports

    args = results.output_args(no_summary=no_summary)
    write_reports(results.reports, out=args.out)
    json_dir = Path(args.json_dir)
    json_dir.mkdir(parents=True, exist_ok=True)
    for entry, report in zip(results.manifest["submissions"], results.reports):
        textio.write_text(json_dir / entry["json"], json.dumps(report, indent=1) + "\n")
    manual_folder, args.manual = args.manual, None
    args.out = None  # write_outputs' default manual folder: written below, keeping graders' unmerged scores
    classroom.write_outputs(results.reports, results.keys, args)
    if manual_folder is not None and any(report.get("written") for report in results.reports):
        manual.write_manual(results.reports, results.keys, results.codes, manual_folder,
                            show_names=args.show_names, pattern=args.student_id, keep=True)


def _key_of(path, roots):
    absolute = Path(path).absolute()
    for root in roots:
        try:
            return absolute.relative_to(root).as_posix()
        except ValueError:
            continue
    return None


def _keep_hand_grading(old, new):
    """A regraded report keeps the scores given by hand to written answers that did not change."""
    from mhacourse.grading import written

    before = {row["id"]: row for row in old.get("written") or []}
    for row in new.get("written") or []:
        previous = before.get(row["id"])
        if previous and previous.get("graded") and previous.get("answer") == row.get("answer"):
            row.update(graded=True, points=previous["points"], comment=previous.get("comment", ""))
    written.summarise(new)


def run_update(args, secret, secret_env="MHACOURSE_GRADE_SECRET"):
    """``mhacourse grade --update RESULTS_DIR SUBMISSION...`` with ``secret`` (None: none given); 0, or 2."""
    from .outputs import _format_points, _secret_hash
    from .pool import Interrupted, grade_many
    from .submissions import collect_submissions

    try:
        results = load(args.update)
        manifest = results.manifest
        if secret is None:
            fresh = (" (the run made a fresh secret and kept none: regrade the whole class with --secret-file)"
                     if manifest.get("secret_source") == "fresh" else "")
            raise ValueError(f"--update needs the run's secret: --secret-file FILE or {secret_env}{fresh}")
        if _secret_hash(secret) != manifest.get("secret"):
            raise ValueError(f"the secret differs from the run's (hash {_secret_hash(secret)}, the run's "
                             f"{manifest.get('secret')}): a regrade with it would meet other hidden inputs; give "
                             "the --secret-file the class was graded with")
        roots = [Path(root) for root in manifest["roots"]]
        where = {key: index for index, key in enumerate(results.keys)}
        paths, indices = [], []
        for path in collect_submissions(args.submissions):
            key = _key_of(path, roots)
            if key is None:
                raise ValueError(f"{textio.printable(path)!r} is not inside the run's class folder(s) "
                                 f"{', '.join(map(str, roots))}")
            if key not in where:
                raise ValueError(f"{key!r} was not graded in the run of {str(results.folder)!r}: only its "
                                 "notebooks can be regraded into it")
            paths.append(path)
            indices.append(where[key])
        if not paths:
            raise ValueError(f"no notebooks found in {args.submissions}")
        options = manifest["options"]
        try:
            reports = grade_many(paths, jobs=args.jobs, timeout=options.get("timeout") or args.timeout,
                                 lesson=options.get("lesson"), progress=False if args.no_progress else None,
                                 secret=secret, sandbox=not options.get("no_sandbox"))
        except Interrupted:
            print("interrupted: nothing was changed", file=sys.stderr)
            return 130
        for index, report in zip(indices, reports):
            old = results.reports[index]
            report["file"] = old["file"]  # the run's name for it: its outputs keep their names
            _keep_hand_grading(old, report)
            results.reports[index] = report
            print(f"regraded {results.keys[index]}: {_format_points(old['total'])} -> "
                  f"{_format_points(report['total'])} of {_format_points(report['max'])} points ({report['status']})",
                  file=sys.stderr)
        write_all(results, no_summary=getattr(args, "no_summary", True))
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {textio.printable(error)}", file=sys.stderr)
        return 2
    print(f"updated {results.folder}: {len(paths)} notebook(s) regraded", file=sys.stderr)
    return 0
