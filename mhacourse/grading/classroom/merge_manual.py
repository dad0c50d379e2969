"""``mhacourse grade merge-manual SCORES.csv --update RESULTS_DIR``: fold the scores of written
answers, graded by hand, into a run's results (rules in :mod:`.manual`)."""

import sys


def configure(parser):
    """Declare ``merge-manual``'s arguments."""
    parser.add_argument("scores", metavar="SCORES.csv",
                        help="the scores CSV (the manual/scores.csv grade wrote, filled in)")
    parser.add_argument("--update", required=True, metavar="RESULTS_DIR",
                        help="the run's results folder (the folder of --out, with its manifest)")
    parser.add_argument("--no-summary", action="store_true", help="do not print the class summary at the end")


def run(args):
    """Merge the scores; 0 on success, 2 with a message naming every bad line."""
    from mhacourse.grading.batch import update
    from mhacourse.grading.classroom.manual import apply_scores, read_scores

    try:
        results = update.load(args.update)
        scores = read_scores(args.scores, results.reports, results.codes)
        changed = apply_scores(results.reports, scores)
        update.write_all(results, no_summary=args.no_summary)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    graded = sum(score is not None for _, _, score, _ in scores)
    print(f"merged {graded} score(s) from {args.scores} into {args.update}: {len(changed)} notebook(s) changed",
          file=sys.stderr)
    return 0
