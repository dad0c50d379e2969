"""Written answers, graded by hand: one page per question, a scores CSV, and ``merge-manual``.

``mhacourse grade`` collects every written answer (:mod:`mhacourse.grading.written`)
into ``--manual DIR`` (default: ``manual/`` beside ``--out``; not with ``--shard``,
whose merge writes it):

* ``NN.M_<id>.html`` per question: the question, the model answer (folded), and
  every student's answer side by side, ordered by a *student code* and showing
  only it (``--show-names`` adds the names). A code is ``S`` and 8 hex digits of
  SHA-256 of the run's secret hash and the student id: stable across runs and
  regrades with the same secret, and not guessable from a name without it.
* ``scores.csv``: ``student code, key, question, max points, score, comment``,
  one line per answer (``key``: the question's id), for graders to fill in.

``mhacourse grade merge-manual SCORES.csv --update RESULTS_DIR`` (:mod:`.merge_manual`) reads that CSV
back (codes map to submissions through the run's manifest,
:mod:`mhacourse.grading.batch.update`), checks every line (a known code and
question, a score that is a number within [0, max points]; an empty score
leaves the answer ungraded) and refuses the whole file, naming each bad line,
before anything is written. Then it folds scores and comments into the
reports' ``written`` rows and rewrites grades.csv, the JSON reports, Canvas,
Gradescope, the feedback pages and these pages.
"""

import csv
import hashlib
import html
import io
import math
from pathlib import Path

from mhacourse.grading.textio import csv_text, safe_name, write_text

SCORES_NAME = "scores.csv"
SCORE_COLUMNS = ("student code", "key", "question", "max points", "score", "comment")


def add_arguments(group):
    """Declare ``--manual`` and ``--show-names`` (in the class options' group)."""
    group.add_argument("--manual", default=None, metavar="DIR",
                       help="write the written answers (graded by hand) into DIR: one HTML page per question and "
                            "scores.csv (default: manual/ beside --out)")
    group.add_argument("--show-names", action="store_true",
                       help="show student names on the written-answer pages and in scores.csv (default: codes only)")


def student_codes(keys, secret_hash=None, pattern=None):
    """One anonymous code per submission: the student's, ``-2``, ``-3``... for a student's further notebooks."""
    from mhacourse.grading.classroom.exports import student_id

    codes, seen = [], {}
    for key in keys:
        try:
            student = student_id(key, pattern)
        except ValueError:
            student = key
        digest = hashlib.sha256(
            f"mhacourse-student\0{secret_hash or ''}\0{student}".encode("utf-8", "surrogateescape")
        ).hexdigest()
        code = f"S{digest[:8].upper()}"
        seen[code] = seen.get(code, 0) + 1
        codes.append(code if seen[code] == 1 else f"{code}-{seen[code]}")
    return codes


def folder_for(args):
    """Where the written-answer pages go for this run, or None (none asked, or a shard)."""
    if getattr(args, "shard", None) is not None:
        return None
    if getattr(args, "manual", None):
        return Path(args.manual)
    out = getattr(args, "out", None)
    return None if out in (None, "-") else Path(out).parent / "manual"


def _questions(reports):
    """``{question id: (lesson, row)}`` in order of first appearance, and the question texts."""
    from mhacourse.grading import written

    found, texts = {}, {}
    for report in reports:
        for row in report.get("written") or []:
            found.setdefault(row["id"], (report.get("lesson"), row))
    for written_id, (lesson, _) in found.items():
        question = next((q for q in written.questions(lesson) if q["id"] == written_id), None)
        texts[written_id] = question or {}
    return found, texts


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
.question { max-width: 52rem; }
.answers { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: .8rem; }
.answer { border: 1px solid #d0d7de; border-radius: 6px; padding: .4rem .7rem; }
.answer h2 { font-size: 1rem; margin: .2rem 0; }
.answer pre { white-space: pre-wrap; font: inherit; margin: .3rem 0; }
.missing { color: #57606a; font-style: italic; }
.graded { color: #1a7f37; }
"""


def question_page(question_id, title, question, model, entries):
    """One question's page. ``entries``: ``(code, name or None, row)`` sorted by code."""
    esc = html.escape
    parts = [f"<h1>{esc(question_id)}{(' — ' + esc(title)) if title else ''}</h1>",
             f"<div class='question'><pre>{esc(question)}</pre>"]
    if model:
        parts.append(f"<details><summary>Model answer</summary><pre>{esc(model)}</pre></details>")
    parts.append(f"</div>\n<p>{len(entries)} answer(s)</p>\n<div class='answers'>")
    for code, name, row in entries:
        heading = esc(code) + (f" — {esc(name)}" if name else "")
        comment = f": {esc(str(row['comment']))}" if row.get("comment") else ""
        score = (f"<p class='graded'>{row['points']:g} / {row['max_points']:g}{comment}</p>"
                 if row.get("graded") else "")
        body = (f"<pre>{esc(row['answer'])}</pre>" if row.get("answered")
                else "<p class='missing'>(no answer)</p>")
        parts.append(f"<div class='answer' data-code='{esc(code)}'><h2>{heading} "
                     f"<small>(of {row['max_points']:g} points)</small></h2>{body}{score}</div>")
    parts.append("</div>")
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
            f"<title>{esc(question_id)}: written answers</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")


def _kept_scores(path):
    """``{(code, key): (score, comment)}`` from an existing scores.csv (graders' work not merged yet)."""
    try:
        rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    except (OSError, ValueError, csv.Error):
        return {}
    return {(r.get("student code", ""), r.get("key", "")): (r.get("score") or "", r.get("comment") or "")
            for r in rows}


def write_manual(reports, keys, codes, folder, *, show_names=False, pattern=None, keep=False):
    """Write one page per written question and ``scores.csv`` into ``folder``; return the pages written.

    Args:
        keep (bool): keep the scores and comments an existing ``scores.csv`` holds for answers
            not merged yet (``--update`` and ``merge-manual`` rewrite the CSV without losing them).
    """
    from mhacourse.grading.classroom.exports import student_id

    found, texts = _questions(reports)
    if not found:
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kept = _kept_scores(folder / SCORES_NAME) if keep else {}
    header = [*SCORE_COLUMNS, *(["student"] if show_names else [])]
    lines, pages = [header], []
    for question_id, (_, first) in found.items():
        entries = []
        for report, key, code in zip(reports, keys, codes):
            for row in report.get("written") or []:
                if row["id"] == question_id:
                    try:
                        name = student_id(key, pattern)
                    except ValueError:
                        name = key
                    entries.append((code, name, row))
        entries.sort(key=lambda entry: entry[0])
        text = texts[question_id]
        page = folder / f"{safe_name(str(first.get('number') or 'written'))}_{safe_name(question_id)}.html"
        write_text(page, question_page(question_id, first.get("title") or "", text.get("question", ""),
                                       text.get("model", ""), [(c, n if show_names else None, r)
                                                               for c, n, r in entries]))
        pages.append(page)
        label = f"{first.get('number') or ''} {first.get('title') or ''}".strip()
        for code, name, row in entries:
            score, comment = kept.get((code, question_id), ("", ""))
            if row.get("graded"):
                score, comment = f"{row['points']:g}", str(row.get("comment") or "")
            lines.append([code, question_id, label, f"{row['max_points']:g}", score, comment,
                          *([name] if show_names else [])])
    write_text(folder / SCORES_NAME, csv_text(lines))
    return pages


def write_for_run(reports, keys, args, *, keep=False):
    """The grade command's (and merge's) written-answer outputs, as its options ask."""
    folder = folder_for(args)
    if folder is None or not any(report.get("written") for report in reports):
        return None
    codes = student_codes(keys, getattr(args, "secret_hash", None), getattr(args, "student_id", None))
    write_manual(reports, keys, codes, folder, show_names=getattr(args, "show_names", False),
                 pattern=getattr(args, "student_id", None), keep=keep)
    return folder


# ---------------------------------------------------------------------------
# mhacourse grade merge-manual SCORES.csv --update RESULTS_DIR


def read_scores(path, reports, codes):
    """The graders' scores: ``[(report index, question id, score or None, comment)]``.

    Raises:
        ValueError: naming every bad line (unknown code or question, a score that is not a
            number within [0, max points], a line given twice), or a missing column.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ValueError(f"cannot read {str(path)!r} ({error.strerror})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in ("student code", "key", "score", "comment")
               if column not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}; the columns are "
                         f"{', '.join(SCORE_COLUMNS)} (the scores.csv `mhacourse grade` wrote)")
    where = {code: index for index, code in enumerate(codes)}
    errors, found, seen = [], [], {}
    for row in reader:
        line = reader.line_num
        code, key = (row.get("student code") or "").strip(), (row.get("key") or "").strip()
        if not code and not key and not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue  # an empty line
        index = where.get(code)
        if index is None:
            errors.append(f"line {line}: unknown student code {code!r} (not in this run)")
            continue
        written = {r["id"]: r for r in reports[index].get("written") or []}
        if key not in written:
            errors.append(f"line {line}: student {code} has no written question {key!r}")
            continue
        if (code, key) in seen:
            errors.append(f"line {line}: {code} {key} is given twice (also on line {seen[(code, key)]})")
            continue
        seen[(code, key)] = line
        score_text, comment = (row.get("score") or "").strip(), (row.get("comment") or "").strip()
        score = None
        if score_text:
            try:
                score = float(score_text)
            except ValueError:
                errors.append(f"line {line}: score {score_text!r} is not a number")
                continue
            best = float(written[key]["max_points"])
            if not math.isfinite(score) or not 0 <= score <= best:
                errors.append(f"line {line}: score {score_text} is outside [0, {best:g}] for {key}")
                continue
        found.append((index, key, score, comment))
    if errors:
        raise ValueError(f"{path}: nothing merged; fix these lines:\n  " + "\n  ".join(errors))
    return found


def apply_scores(reports, scores):
    """Fold the scores into the reports' written rows; return the indices of the reports changed."""
    from mhacourse.grading import written

    changed = set()
    for index, key, score, comment in scores:
        row = next(r for r in reports[index]["written"] if r["id"] == key)
        before = (row.get("graded"), row.get("points"), row.get("comment"))
        if score is not None:
            row["graded"], row["points"] = True, score
        row["comment"] = comment
        if (row.get("graded"), row.get("points"), row.get("comment")) != before:
            changed.add(index)
        written.summarise(reports[index])
    return changed
