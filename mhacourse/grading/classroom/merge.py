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
        merged = shards.merge(args.parts)
        reports, keys = merged.reports, merged.keys
        _check_options(args, len(reports))
        write_reports(reports, out=args.out, json_dir=args.json_dir)
        print(f"merged {len(args.parts)} part(s): {len(reports)} notebook(s)"
              + (f"; wrote {args.out}" if args.out not in (None, "-") else ""), file=sys.stderr)
        write_outputs(reports, keys, args)
        _write_manifest(args, merged)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _write_manifest(args, merged):
    """The run's manifest (``mhacourse grade --update`` and ``merge-manual`` read it), or why there is none."""
    from mhacourse.grading.batch.update import MANIFEST_NAME, write_merged_manifest

    if args.out in (None, "-"):
        return
    if args.json_dir is None:
        print(f"note: no {MANIFEST_NAME} without --json: a regrade (--update) needs the JSON reports", file=sys.stderr)
        return
    path = write_merged_manifest(args, merged)
    if path is None:
        why = ("the parts were written by an older mhacourse (no class folders in them)" if merged.roots is None
               else "the shards were graded without --secret-file")
        print(f"note: no {MANIFEST_NAME}: {why}; --update and merge-manual need one", file=sys.stderr)
        return
    print(f"wrote {path} (which shard graded each notebook; `mhacourse grade --update` regrades one student)",
          file=sys.stderr)
    if merged.other_roots:
        print(f"note: the shards saw the class folder(s) at different paths; the manifest keeps the first "
              f"({', '.join(merged.roots)}): a regrade finds notebooks there", file=sys.stderr)
