"""Split a class into N shards, and merge the shards' results into one.

``mhacourse grade SUBMISSIONS --shard K/N`` grades the submissions whose shard
is K. A submission's shard comes from SHA-256 of its *key*: its path relative
to the SUBMISSION argument it was found under (the file name for a file given
directly). The key does not depend on the machine, the working directory or
the mount point, so every task of a batch job agrees on the split, and every
submission lands in exactly one shard.

Each shard writes its CSV and, next to it, a *part* file (``grades-3.csv`` →
``grades-3.part.json``) holding its full reports and their positions in the
unsharded list. ``mhacourse grade merge PARTS...`` reads the parts back, checks
that they come from one run (same submissions, every shard present once) and
writes what one unsharded run writes, byte for byte: the CSV is made by the
same function from the same reports in the same order.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

PART_FORMAT = "mhacourse-grade-part"
PART_VERSION = 2
READ_VERSIONS = (1, 2)  # version 1 parts (no class folders, no options) merge, but leave no manifest


@dataclass(frozen=True)
class Submission:
    """One submitted notebook.

    Attributes:
        path (Path): The notebook as found (what a report's ``file`` shows).
        key (str): Its path relative to the SUBMISSION argument it was found
            under, with ``/`` separators (its file name when given directly).
        root (int): The index of that SUBMISSION argument.
    """

    path: Path
    key: str
    root: int = 0


def collect(arguments):
    """The submissions under ``arguments``, in the order the grader lists them.

    Args:
        arguments (list): notebooks or folders, as given on the command line.

    Returns:
        list(Submission): one per notebook.
    """
    from mhacourse.grading.batch.submissions import collect_submissions

    submissions = []
    for index, argument in enumerate(arguments):
        root = Path(argument)
        for path in collect_submissions([argument]):
            key = path.relative_to(root).as_posix() if root.is_dir() else path.name
            submissions.append(Submission(path, key, index))
    return submissions


def parse_shard(text):
    """``"K/N"`` → ``(K, N)``, with ``1 <= K <= N``.

    Raises:
        ValueError: naming ``--shard`` and the expected form.
    """
    try:
        k, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard must be K/N with whole numbers, e.g. 3/8; got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def shard_of(key, n):
    """The shard (1 to ``n``) of the submission with this key."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def select(submissions, k, n):
    """The positions (in ``submissions``) of shard ``k`` of ``n``."""
    return [index for index, submission in enumerate(submissions) if shard_of(submission.key, n) == k]


def fingerprint(submissions):
    """A digest of the whole list of keys: parts of one run share it."""
    return hashlib.sha256("\n".join(s.key for s in submissions).encode("utf-8", "surrogateescape")).hexdigest()


def part_path(out):
    """Where the part file of a shard whose CSV is ``out`` goes."""
    out = Path(out)
    return out.with_suffix(".part.json") if out.suffix == ".csv" else Path(f"{out}.part.json")


GRADING_OPTIONS = ("timeout", "lesson", "no_sandbox")


def grading_options(args):
    """The options that shape a run's reports: a part records them, a regrade repeats them."""
    return {name: getattr(args, name, None) for name in GRADING_OPTIONS}


def roots_of(arguments):
    """The class folders of SUBMISSION ``arguments`` (absolute; a notebook's folder for a notebook)."""
    roots = []
    for argument in arguments:
        path = Path(argument).absolute()
        roots.append(str(path if path.is_dir() else path.parent))
    return roots


def write_part(path, reports, submissions, positions, shard, secret_hash=None, *, roots=None, root_of=None,
               grading=None):
    """Write one shard's part file.

    Args:
        path (str or Path): the part file.
        reports (list(dict)): the shard's reports, in the order of ``positions``.
        submissions (list(Submission)): every submission of the class (all shards).
        positions (list(int)): the shard's positions in ``submissions``.
        shard (tuple): ``(K, N)``.
        secret_hash (str, optional): a digest of the run's secret: merge refuses parts graded
            on different hidden inputs.
        roots (list(str), optional): the class folders as this shard saw them (:func:`roots_of`); each
            report records its submission's folder (``Submission.root``).
        grading (dict, optional): the options that shaped the reports (``--timeout``, ``--lesson``…),
            for the merged run's manifest.
    """
    part = {
        "format": PART_FORMAT, "version": PART_VERSION, "shard": shard[0], "shards": shard[1],
        "submissions": len(submissions), "fingerprint": fingerprint(submissions), "secret": secret_hash,
        "roots": roots, "grading": grading,
        "reports": [{"index": index, "key": submissions[index].key, "root": submissions[index].root,
                     "report": report}
                    for index, report in zip(positions, reports)],
    }
    from mhacourse.grading.textio import write_text

    write_text(path, json.dumps(part, indent=1) + "\n")


def _read_part(path):
    path = Path(path)
    if path.suffix == ".csv":
        path = part_path(path)
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"PART must be a shard's part file (*.part.json) or its CSV; cannot read {str(path)!r} "
                         f"({type(error).__name__})") from None
    if not isinstance(part, dict) or part.get("format") != PART_FORMAT or part.get("version") not in READ_VERSIONS:
        raise ValueError(f"PART {str(path)!r} is not a part file written by `mhacourse grade --shard`")
    return path, part


@dataclass
class Merged:
    """The parts of one sharded run, joined.

    Attributes:
        reports (list(dict)): every report, in the order of the unsharded run.
        keys (list(str)): each report's key.
        shard_of (list(int)): which shard graded each report.
        shards (int): N, the number of shards.
        secret (str or None): the digest of the run's secret.
        roots (list(str) or None): the class folders as the first part saw them (``None`` from
            version 1 parts).
        root_of (list(int) or None): each report's folder in ``roots``.
        grading (dict or None): the options that shaped the reports.
        other_roots (list): the class folders of parts that saw them elsewhere (another mount).
    """

    reports: list
    keys: list
    shard_of: list
    shards: int
    secret: object
    roots: object
    root_of: object
    grading: object
    other_roots: list


def merge(paths):
    """Read the parts of one sharded run and put its reports back in order.

    Args:
        paths (list): part files, or the shards' CSV files (their part file
            sits next to them).

    Returns:
        Merged: every report in the order of the unsharded run, with its key
        and shard.

    Raises:
        ValueError: when a part is unreadable, when the parts come from
        different runs, or when a shard is missing or given twice.
    """
    if not paths:
        raise ValueError("merge needs PART files: the *.part.json (or .csv) files the shards wrote")
    parts = [_read_part(path) for path in paths]
    first_path, first = parts[0]
    seen = {}
    for path, part in parts:
        for field in ("shards", "submissions", "fingerprint", "secret", "grading"):
            if part.get(field) != first.get(field):
                why = {"secret": "were graded with different secrets, so on different hidden inputs (give every "
                                 "shard the same --secret-file)",
                       "grading": "were graded with different options (give every shard the same --timeout, "
                                  "--lesson and --no-sandbox, and the same version of mhacourse)",
                       }.get(field, "(shard every task over the same SUBMISSIONS)")
                raise ValueError(f"parts come from different runs: {str(path)!r} and {str(first_path)!r} differ in "
                                 f"{field!r} {why}")
        if part["shard"] in seen:
            raise ValueError(f"shard {part['shard']}/{part['shards']} is given twice: {str(seen[part['shard']])!r} "
                             f"and {str(path)!r}")
        seen[part["shard"]] = path
    missing = [k for k in range(1, first["shards"] + 1) if k not in seen]
    if missing:
        names = ", ".join(f"{k}/{first['shards']}" for k in missing)
        raise ValueError(f"shard(s) {names} missing among the PARTS (did a task of the batch job fail?)")
    entries = sorted(((entry, part["shard"]) for _, part in parts for entry in part["reports"]),
                     key=lambda item: item[0]["index"])
    if [entry["index"] for entry, _ in entries] != list(range(first["submissions"])):
        raise ValueError("the parts do not cover every submission exactly once; re-run the shards")
    complete = all(part.get("roots") is not None for _, part in parts)
    other_roots = [part["roots"] for _, part in parts if complete and part["roots"] != first["roots"]]
    return Merged(
        reports=[entry["report"] for entry, _ in entries], keys=[entry["key"] for entry, _ in entries],
        shard_of=[shard for _, shard in entries], shards=first["shards"], secret=first.get("secret"),
        roots=first.get("roots") if complete else None,
        root_of=[entry.get("root") for entry, _ in entries] if complete else None,
        grading=first.get("grading") if complete else None, other_roots=other_roots)
