"""``mhacourse grade merge PARTS...``: join the shards of one run into what one unsharded run writes.

Each shard (``mhacourse grade ... --shard K/N --out grades-K.csv``) writes a
part file beside its CSV. This subcommand reads every part, refuses parts of
different runs (other submissions, another shard count, another secret) and a
missing or repeated shard, and writes the CSV, the JSON reports and the
exports exactly as one run over the whole class writes them.
"""

import sys

from mhacourse.grading.classroom import _check_options, add_arguments, shards, write_outputs


def configure(parser):
    """Declare the merge subcommand's arguments."""
    parser.add_argument("parts", nargs="+", metavar="PART",
                        help="the shards' part files (*.part.json), or their CSV files (the part sits beside each)")
    parser.add_argument("--out", default="grades.csv", help="CSV file to write ('-' for stdout; default: grades.csv)")
    parser.add_argument("--json", dest="json_dir", default=None, metavar="DIR",
                        help="also write one JSON report per submission into DIR")
    add_arguments(parser, shard=False)


def run(args):
    """Merge the parts; 0 on success, 2 with a message naming what is wrong."""
    from mhacourse.grading.batch.outputs import check_outputs, write_reports

    try:
        check_outputs(args)
        reports, keys = shards.merge(args.parts)
        _check_options(args, len(reports))
        write_reports(reports, out=args.out, json_dir=args.json_dir)
        print(f"merged {len(args.parts)} part(s): {len(reports)} notebook(s)"
              + (f"; wrote {args.out}" if args.out not in (None, "-") else ""), file=sys.stderr)
        write_outputs(reports, keys, args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
