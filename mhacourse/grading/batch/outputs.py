"""Writing a class's results: the CSV, one JSON report per submission, and the journal that keeps
every finished report through a crash or Ctrl-C (``--resume``).
"""

import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

from mhacourse.grading import textio


def _format_points(value):
    return f"{value:g}"


def late_text(who):
    """``""`` (on time or unknown), ``"late"`` or ``"late 2 days"`` for an identity dict."""
    if not isinstance(who, dict) or not who.get("late"):
        return ""
    days = who.get("days_late")
    return f"late {days} day{'' if days == 1 else 's'}" if isinstance(days, int) else "late"


def csv_text(reports):
    """The CSV table: one row per submission, one points column per exercise.

    Columns: ``file, lesson, status, student, late, <exercise ids...>, total,
    max, flags, detail``. ``student`` is the id the exports use (empty, and
    the row flagged ``unmatched``, when no source identified the student);
    ``late`` is empty when on time, else ``late`` or ``late N days``. An
    exercise column is empty for submissions of other lessons.
    With written answers (graded by hand), ``<written ids...>, written,
    written_max`` come before ``total``: a written column is empty until
    ``merge-manual`` scores it; ``total`` and ``max`` stay the auto-graded points.
    Every cell is written as text a spreadsheet does not run (see
    :func:`mhacourse.grading.textio.spreadsheet_cell`).
    """
    exercise_columns = []
    for report in reports:
        for row in report["exercises"]:
            if row["id"] not in exercise_columns:
                exercise_columns.append(row["id"])
    written_columns = []
    for report in reports:
        for row in report.get("written") or []:
            if row["id"] not in written_columns:
                written_columns.append(row["id"])
    written_sums = ["written", "written_max"] if written_columns else []
    rows = [["file", "lesson", "status", "student", "late", *exercise_columns, *written_columns, *written_sums,
             "total", "max", "flags", "detail"]]
    for report in reports:
        points = {row["id"]: _format_points(row["points"]) for row in report["exercises"]}
        by_hand = {row["id"]: _format_points(row["points"]) for row in report.get("written") or [] if row.get("graded")}
        sums = ([_format_points(report.get("written_total") or 0), _format_points(report.get("written_max") or 0)]
                if written_columns else [])
        who = report.get("student") if isinstance(report.get("student"), dict) else {}
        rows.append([report["file"], report["lesson"] or "", report["status"], str(who.get("student") or ""),
                     late_text(who),
                     *(points.get(column, "") for column in exercise_columns),
                     *(by_hand.get(column, "") for column in written_columns), *sums,
                     _format_points(report["total"]), _format_points(report["max"]),
                     "; ".join(report["flags"]), report["detail"]])
    return textio.csv_text(rows)


def _json_names(reports):
    files = [Path(report["file"]).absolute() for report in reports]
    common = Path(os.path.commonpath([str(f.parent) for f in files])) if files else Path()
    names = {}
    for report, file in zip(reports, files):
        stem = textio.safe_name(str(file.relative_to(common).with_suffix("")))
        name, n = f"{stem}.json", 1
        while name in names.values():
            n += 1
            name = f"{stem}-{n}.json"
        names[id(report)] = name
    return names


def write_reports(reports, *, out=None, json_dir=None):
    """Write the CSV (``out``; ``"-"`` for stdout) and one JSON report per submission."""
    if out is not None:
        text = csv_text(reports)
        if str(out) == "-":
            sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace"))
            sys.stdout.flush()
        else:
            textio.write_text(out, text)
    if json_dir is not None:
        json_dir = Path(json_dir)
        json_dir.mkdir(parents=True, exist_ok=True)
        names = _json_names(reports)
        for report in reports:
            textio.write_text(json_dir / names[id(report)], json.dumps(report, indent=1) + "\n")


def check_outputs(args):
    """Refuse, before any grading, an output the run could not write (a folder that does not exist,
    one without write permission, a file where a folder must go).

    Raises:
        ValueError: naming the option and the path.
    """
    files = [("--out", getattr(args, "out", None)), ("--canvas", getattr(args, "canvas", None))]
    folders = [("--json", getattr(args, "json_dir", None)), ("--feedback", getattr(args, "feedback", None))]
    gradescope = getattr(args, "gradescope", None)
    (files if gradescope and str(gradescope).endswith(".json") else folders).append(("--gradescope", gradescope))
    for option, value in files:
        if value in (None, "-"):
            continue
        path = Path(value)
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise ValueError(f"{option} {str(value)!r} is a folder; give a file")
        if not parent.is_dir():
            raise ValueError(f"{option} {str(value)!r}: the folder {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise ValueError(f"{option} {str(value)!r}: no permission to write there")
    for option, value in folders:
        if value is None:
            continue
        path = Path(value)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{option} {str(value)!r} is a file; give a folder")
        existing = next(p for p in (path, *path.absolute().parents) if p.exists())
        if not os.access(existing, os.W_OK):
            raise ValueError(f"{option} {str(value)!r}: no permission to write in {str(existing)!r}")


def _digest(path):
    path = Path(path)
    try:
        data = os.readlink(path).encode("utf-8", "surrogateescape") if path.is_symlink() else path.read_bytes()
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest()


def _secret_hash(secret):
    return hashlib.sha256(f"mhacourse-secret\0{secret}".encode()).hexdigest()[:16]


class Journal:
    """Results written as each submission finishes: ``OUT.journal.jsonl`` beside the CSV.

    A crash or Ctrl-C keeps every finished report; ``--resume`` reads them back
    (those whose notebook and secret are unchanged) and grades only the rest.
    The journal's first line holds the run's secret (the file is mode 600), so
    a resumed run without ``--secret-file`` uses the same hidden inputs; it is
    removed once every output is written.
    """

    def __init__(self, out):
        self.path = Path(f"{out}.journal.jsonl")

    def _lines(self):
        if not self.path.is_file():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return entries

    def start(self, given, resume):
        """Open the journal; return the run's secret (``given``, else the journal's when resuming, else fresh)."""
        kept = next((e.get("secret") for e in self._lines() if isinstance(e, dict) and "secret" in e
                     and "report" not in e), None) if resume else None
        secret = given or kept or secrets.token_hex(16)
        if not (resume and kept == secret):
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(json.dumps({"format": "mhacourse-grade-journal", "secret": secret}) + "\n")
        return secret

    def load(self, paths, secret):
        """``{index: report}`` of the journal's reports that still hold for ``paths`` and ``secret``."""
        done, where = {}, {str(path): index for index, path in enumerate(paths)}
        for entry in self._lines():
            index = where.get(entry.get("file")) if isinstance(entry, dict) else None
            if (index is not None and entry.get("secret") == _secret_hash(secret)
                    and entry.get("digest") == _digest(paths[index]) and isinstance(entry.get("report"), dict)):
                done[index] = entry["report"]
        return done

    def add(self, path, report, secret):
        entry = {"file": str(path), "digest": _digest(path), "secret": _secret_hash(secret), "report": report}
        with open(self.path, "a", encoding="utf-8", errors="backslashreplace") as file:
            file.write(json.dumps(entry) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def finish(self):
        if self.path.exists():
            self.path.unlink()
