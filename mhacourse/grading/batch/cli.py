"""``mhacourse grade SUBMISSION...``: the command line of the batch grader.

The path of a class, top-down: collect the submissions (:mod:`.submissions`),
check every output path (:mod:`.outputs`), grade them in a pool
(:mod:`.pool` → :func:`.report.grade_submission`), write each result as it
finishes, then the exports (:mod:`mhacourse.grading.classroom`).
"""

import os
import sys
from collections import Counter
from pathlib import Path

from mhacourse.grading import textio

from .outputs import Journal, _format_points, _secret_hash, check_outputs, write_reports
from .pool import Interrupted, grade_many

SECRET_ENV = "MHACOURSE_GRADE_SECRET"


def configure(parser):
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                        help="submitted notebooks, or folders searched for *.ipynb")
    parser.add_argument("--out", default="grades.csv", help="CSV file to write ('-' for stdout; default: grades.csv)")
    parser.add_argument("--json", dest="json_dir", default=None, metavar="DIR",
                        help="also write one JSON report per submission into DIR")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded in parallel (default: 1)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds allowed per cell (default: 60)")
    parser.add_argument("--lesson", default=None, help="grade every submission as this lesson (e.g. 02)")
    parser.add_argument("--secret-file", default=None, metavar="FILE",
                        help=f"the run's secret (hidden case inputs), shared by shards; default: env "
                             f"{SECRET_ENV}, else a fresh random secret")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run submissions without bubblewrap, with your rights (every row is flagged)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--course", action="append", default=[], metavar="DIR",
                        help="an instructor's course folder: its *.py files declare more EXERCISES, its "
                             "exercise_sources/ their notebooks (repeatable; or set MHACOURSE_COURSE)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the reports OUT.journal.jsonl holds from an interrupted run (same notebooks, "
                             "same secret) and grade only the rest")
    parser.add_argument("--update", default=None, metavar="RESULTS_DIR",
                        help="regrade these notebooks (a student's folder, or notebooks) into the results of a "
                             "run (the folder of its --out, with its JSON reports) with the run's secret; "
                             "every output of the run is rewritten, only their rows change")
    from mhacourse.grading import classroom

    classroom.add_arguments(parser)


def read_secret(secret_file=None):
    """The run's secret: from ``secret_file``, else ``$MHACOURSE_GRADE_SECRET``, else ``None`` (fresh).

    Raises:
        ValueError: when the file cannot be read or is empty.
    """
    if secret_file is not None:
        try:
            text = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(f"--secret-file: cannot read {secret_file!r} ({error.strerror})") from None
        if not text:
            raise ValueError(f"--secret-file: {secret_file!r} is empty")
        return text
    return os.environ.get(SECRET_ENV) or None


def run(args):
    from mhacourse.grading import classroom
    from mhacourse.grading.registry import COURSE_ENV

    for folder in getattr(args, "course", None) or []:  # in the environment, so the pool's workers see it too
        os.environ[COURSE_ENV] = os.pathsep.join(filter(None, [os.environ.get(COURSE_ENV), str(Path(folder))]))
    if getattr(args, "update", None):
        from .update import run_update

        try:
            secret = read_secret(getattr(args, "secret_file", None))
        except ValueError as error:
            print(f"error: {textio.printable(error)}", file=sys.stderr)
            return 2
        return run_update(args, secret, SECRET_ENV)
    journal = Journal(args.out) if args.out not in (None, "-") else None
    resume = bool(getattr(args, "resume", False))
    try:
        check_outputs(args)
        if resume and journal is None:
            raise ValueError("--resume needs --out FILE: the results so far are kept beside it")
        paths = [submission.path for submission in classroom.collected(args)]  # the one collection of the run
        if not paths:
            raise ValueError(f"no notebooks found in {args.submissions}")
        paths = classroom.select(paths, args)
        students = classroom.identities(paths, args)
        secret = read_secret(getattr(args, "secret_file", None))
        secret_given = secret is not None
        if getattr(args, "shard", None) is not None and secret is None:
            raise ValueError("--shard needs the run's secret shared by every shard: --secret-file FILE (make one with "
                             "python -c 'import secrets; print(secrets.token_hex(16))' > secret) or "
                             f"{SECRET_ENV}")
        if journal is not None:
            secret = journal.start(secret, resume)
            done = journal.load(paths, secret) if resume else {}
            if resume:
                print(f"resuming: {len(done)} of {len(paths)} already graded", file=sys.stderr)
        else:
            done = {}
        args.secret_hash = _secret_hash(secret) if secret else None
        finished = dict(done)

        for index, report in done.items():
            classroom.tag_report(report, students[index])

        def on_report(index, report):
            finished[index] = classroom.tag_report(report, students[index])
            if journal is not None:
                journal.add(paths[index], report, secret)
                write_reports([finished[i] for i in sorted(finished)], out=args.out)

        if not getattr(args, "no_sandbox", False):
            from mhacourse.grading.batch import isolation

            held = isolation.guarantees()
            print(f"sandbox: {held['sandbox'] or 'none'}; uid {held['uid']}; limits by {held['limits']}"
                  + (f"; every row is flagged {', '.join(held['weaker'])}" if held["weaker"] else ""), file=sys.stderr)
        try:
            reports = grade_many(paths, jobs=args.jobs, timeout=args.timeout, lesson=args.lesson,
                                 progress=False if args.no_progress else None, secret=secret,
                                 sandbox=not getattr(args, "no_sandbox", False), on_report=on_report, done=done)
            reports = [classroom.tag_report(report, who) for report, who in zip(reports, students)]
        except Interrupted as stop:
            kept = [report for report in stop.reports if report is not None]
            write_reports(kept, out=args.out, json_dir=args.json_dir)
            print(f"interrupted: {len(kept)} of {len(paths)} graded and written"
                  + (f" to {args.out}; run the same command with --resume to grade the rest"
                     if journal is not None else ""), file=sys.stderr)
            return 130
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {textio.printable(error)}", file=sys.stderr)
        return 2
    write_reports(reports, out=args.out, json_dir=args.json_dir)
    statuses = Counter(report["status"] for report in reports)
    total, best = sum(r["total"] for r in reports), sum(r["max"] for r in reports)
    print(f"graded {len(reports)} notebook(s): " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
          + f"; {_format_points(total)} of {_format_points(best)} points in all", file=sys.stderr)
    if args.out not in (None, "-"):
        print(f"wrote {args.out}" + (f" and {args.json_dir}/" if args.json_dir else ""), file=sys.stderr)
    status = classroom.after_grading(reports, args)
    if status == 0 and args.out not in (None, "-") and getattr(args, "shard", None) is None and args.secret_hash:
        from .update import write_manifest

        try:
            write_manifest(args, reports, args.secret_hash, secret_given)
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
    if journal is not None and status == 0:
        journal.finish()
    return status
