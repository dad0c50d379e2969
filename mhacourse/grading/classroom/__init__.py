"""``mhacourse grade`` for a whole class: shards, merge, exports, feedback, summary.

The grade command calls three functions of this module: :func:`add_arguments`
declares the options, :func:`select` keeps the submissions of ``--shard K/N``,
and :func:`after_grading` writes the part file, the exports, the feedback and
the summary. ``mhacourse grade merge PARTS...`` is its own subcommand
(:mod:`.merge`) with the same export options.
"""

import json
import re
import sys
from pathlib import Path

from mhacourse.grading.classroom import exports, feedback, identity, manual, shards, summary
from mhacourse.grading.textio import write_text

SUMMARY_NAME = "class-summary.json"


def add_arguments(parser, shard=True):
    """Declare the class options on the grade command's parser (``shard=False``: on merge's)."""
    group = parser.add_argument_group("a whole class (see the README's class-grading section)")
    if shard:
        group.add_argument("--shard", default=None, metavar="K/N",
                           help="grade only shard K of N (1 <= K <= N); writes OUT's part file for `grade merge`")
    group.add_argument("--gradescope", default=None, metavar="DIR",
                       help="write DIR/<submission>/results.json for Gradescope (a *.json path: one file)")
    group.add_argument("--gradescope-visibility", default="visible", choices=exports.VISIBILITIES,
                       help="the results' visibility in Gradescope (default: visible)")
    group.add_argument("--canvas", default=None, metavar="FILE", help="write a Canvas gradebook CSV")
    group.add_argument("--canvas-columns", default="lesson", choices=("lesson", "exercise"),
                       help="one Canvas column per lesson or per exercise (default: lesson)")
    group.add_argument("--canvas-id-column", default=None, choices=exports.CANVAS_ID_COLUMNS,
                       help="Canvas column for the student id (default: ID if all ids are digits, else SIS Login ID)")
    group.add_argument("--student-id", default=None, metavar="REGEX",
                       help="take the student id from each submission's relative path with REGEX (group 'id')")
    group.add_argument("--feedback", default=None, metavar="DIR",
                       help="write one self-contained HTML feedback page per submission into DIR")
    group.add_argument("--no-summary", action="store_true", help="do not print the class summary at the end")
    group.add_argument("--roster", default=None, metavar="CSV",
                       help="the class list (Canvas's gradebook export, or any CSV with id/login/name columns): "
                            "folders and files are matched to it by login, SIS id, Canvas id or name")
    group.add_argument("--late-policy", default="none", metavar="POLICY",
                       help="none (default: late is only a column), zero, or percent:N (N%% off per day late) "
                            "in the Canvas and Gradescope exports")
    manual.add_arguments(group)  # written answers, graded by hand


def _check_options(args, count):
    identity.parse_late_policy(getattr(args, "late_policy", "none"))
    if getattr(args, "student_id", None) is not None:
        try:
            re.compile(args.student_id)
        except re.error as error:
            raise ValueError(f"--student-id must be a regular expression, got {args.student_id!r} ({error})") from None
    if args.gradescope and Path(args.gradescope).suffix == ".json" and count != 1:
        raise ValueError(f"--gradescope {args.gradescope!r} (a .json file) needs exactly one submission, got {count}")


def collected(args):
    """Every submission of the run (:class:`.shards.Submission`: path, key, folder), collected once and kept on
    ``args``: the grader, the shard, the identities, the exports and the manifest all read this list."""
    found = getattr(args, "collected_submissions", None)
    if found is None:
        found = shards.collect(args.submissions)
        args.collected_submissions = found
    return found


def _shard_positions(args):
    """Every submission, and the positions of this run's shard among them."""
    submissions = collected(args)
    if args.shard is None:
        return submissions, list(range(len(submissions)))
    k, n = shards.parse_shard(args.shard)
    return submissions, shards.select(submissions, k, n)


def select(paths, args):
    """The notebooks this run grades: all of ``paths``, or shard K of ``--shard K/N``.

    Args:
        paths (list(Path)): every submission, as the grader collected them.
        args (argparse.Namespace): the grade command's arguments.

    Raises:
        ValueError: for a bad ``--shard``, ``--student-id`` or ``--gradescope``.
    """
    if args.shard is None:
        _check_options(args, len(paths))
        return paths
    if args.out in (None, "-"):
        raise ValueError("--shard needs --out FILE: the shard's part file is written next to it")
    submissions, positions = _shard_positions(args)
    _check_options(args, len(positions))
    return [submissions[index].path for index in positions]


def identities(paths, args):
    """Who submitted each of ``paths`` (:mod:`.identity`), as dicts for the reports' ``student``."""
    keys = {str(submission.path): submission.key for submission in collected(args)}
    return identity.identities(paths, [keys.get(str(path), Path(path).name) for path in paths],
                               getattr(args, "roster", None))


def tag_report(report, who):
    """Put ``who`` (an identity dict) in ``report["student"]``; flag ``unmatched`` when nobody was found."""
    report["student"] = who
    if not who.get("matched") and "unmatched" not in report.setdefault("flags", []):
        report["flags"] = [*report["flags"], "unmatched"]
    return report


def list_unmatched(reports):
    """Print every submission no source identified (stderr), at the end of the run."""
    lost = [report for report in reports if isinstance(report.get("student"), dict)
            and not report["student"].get("matched")]
    if lost:
        print(f"{len(lost)} submission(s) matched to no student (exported with an empty grade, flagged "
              "unmatched; give --roster, or rename the folders):", file=sys.stderr)
        for report in lost:
            print(f"  {report.get('file')}", file=sys.stderr)


def write_outputs(reports, keys, args):
    """Gradescope, Canvas, feedback and the summary, as the options ask."""
    written = []
    names = exports.output_names(keys)
    pattern = re.compile(args.student_id) if args.student_id else None
    policy = getattr(args, "late_policy", "none") or "none"
    if args.gradescope:
        exports.write_gradescope(reports, names, args.gradescope, late_policy=policy,
                                 visibility=getattr(args, "gradescope_visibility", "visible") or "visible")
        written.append(args.gradescope)
    if args.canvas:
        text = exports.canvas_csv(reports, keys, by=args.canvas_columns, id_column=args.canvas_id_column,
                                  pattern=pattern, late_policy=policy)
        write_text(args.canvas, text)
        written.append(args.canvas)
    if args.feedback:
        feedback.write_feedback(reports, names, args.feedback)
        written.append(f"{args.feedback}/")
    folder = manual.write_for_run(reports, keys, args)
    if folder is not None:
        written.append(f"{folder}/ (written answers, to grade by hand)")
    data = summary.class_summary(reports)
    if getattr(args, "json_dir", None):
        Path(args.json_dir).mkdir(parents=True, exist_ok=True)
        write_text(Path(args.json_dir) / SUMMARY_NAME, json.dumps(data, indent=1) + "\n")
        written.append(str(Path(args.json_dir) / SUMMARY_NAME))
    if written:
        print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    if not args.no_summary:
        print(summary.summary_text(data), file=sys.stderr)
    list_unmatched(reports)


def after_grading(reports, args):
    """Write the part file (with ``--shard``) and everything :func:`write_outputs` writes.

    Args:
        reports (list(dict)): the reports, in the order :func:`select` returned.
        args (argparse.Namespace): the grade command's arguments.

    Returns:
        int: the exit status, 0 or 2 (an error is printed).
    """
    submissions, positions = _shard_positions(args)
    if len(positions) != len(reports):
        print(f"error: {len(reports)} report(s) for {len(positions)} submission(s)", file=sys.stderr)
        return 2
    try:
        if args.shard is not None:
            part = shards.part_path(args.out)
            shards.write_part(part, reports, submissions, positions, shards.parse_shard(args.shard),
                              getattr(args, "secret_hash", None), roots=shards.roots_of(args.submissions),
                              grading=shards.grading_options(args))
            print(f"wrote {part} (shard {args.shard}; join the shards with `mhacourse grade merge`)", file=sys.stderr)
        write_outputs(reports, [submissions[index].key for index in positions], args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
