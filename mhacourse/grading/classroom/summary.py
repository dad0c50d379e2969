"""The class at a glance: what ``mhacourse grade`` prints when it is done.

Per exercise the score distribution; the hints that fired most (the class's
most common mistakes); the slowest notebooks. :func:`class_summary` returns the
data (written as JSON next to the reports), :func:`summary_text` the screen.
"""

import os
from collections import Counter
from pathlib import Path

from mhacourse.grading.classroom.feedback import as_points

TOP_HINTS = 8
# Hint ids that are not mistakes of the answer's code (a rule broken): left out of "most common mistakes".
NOT_MISTAKES = ("policy", "tampered")
TOP_SLOWEST = 5
BAR_WIDTH = 24


def _hint_id(row):
    """The mistake recognised for a failed exercise: its own, else its first failed case's."""
    if row.get("passed") is True:
        return None
    if row.get("hint_id"):
        return None if row["hint_id"] in NOT_MISTAKES else str(row["hint_id"])
    for case in row.get("cases") or []:
        if isinstance(case, dict) and case.get("status") != "passed" and case.get("hint_id"):
            return None if case["hint_id"] in NOT_MISTAKES else str(case["hint_id"])
    return None


def class_summary(reports):
    """The summary of a graded class.

    Args:
        reports (list(dict)): grading reports.

    Returns:
        dict: ``submissions``, ``statuses`` (count per status), ``points``
        (``total``, ``max``, ``mean``), ``exercises`` (per exercise: ``id``,
        ``lesson``, ``max_points``, ``graded``, ``mean``, ``distribution`` as
        ``[[points, count], ...]`` from the lowest score), ``hints`` (the most
        frequent: ``hint_id``, ``count``, ``exercises``, ``hint``) and
        ``slowest`` (``file``, ``seconds``, ``timing``).
    """
    exercises, hints, hint_texts, hint_exercises = {}, Counter(), {}, {}
    for report in reports:
        for row in report.get("exercises") or []:
            if not isinstance(row, dict):
                continue
            entry = exercises.setdefault(str(row.get("id")), {
                "id": str(row.get("id")), "lesson": report.get("lesson"),
                "max_points": as_points(row.get("max_points")), "scores": Counter()})
            entry["scores"][as_points(row.get("points"))] += 1
            hint_id = _hint_id(row)
            if hint_id:
                hints[hint_id] += 1
                hint_texts.setdefault(hint_id, str(row.get("hint") or ""))
                hint_exercises.setdefault(hint_id, []).append(entry["id"])
    for entry in exercises.values():
        scores = entry.pop("scores")
        entry["graded"] = sum(scores.values())
        entry["mean"] = round(sum(points * n for points, n in scores.items()) / entry["graded"], 4)
        entry["distribution"] = [[points, scores[points]] for points in sorted(scores)]
    slowest = sorted(reports, key=lambda report: -as_points(report.get("seconds")))[:TOP_SLOWEST]
    files = [Path(str(report.get("file"))) for report in reports]
    root = Path(os.path.commonpath([str(f.parent) for f in files])) if files else Path()
    total = sum(as_points(report.get("total")) for report in reports)
    return {
        "submissions": len(reports),
        "statuses": dict(sorted(Counter(str(report.get("status")) for report in reports).items())),
        "points": {"total": total, "max": sum(as_points(report.get("max")) for report in reports),
                   "mean": round(total / len(reports), 4) if reports else 0.0},
        "exercises": sorted(exercises.values(), key=lambda entry: str(entry["lesson"])),  # then first seen
        "hints": [{"hint_id": hint_id, "count": count, "exercises": sorted(set(hint_exercises[hint_id])),
                   "hint": hint_texts[hint_id]} for hint_id, count in hints.most_common(TOP_HINTS)],
        "slowest": [{"file": str(report.get("file")), "name": _relative(str(report.get("file")), root),
                     "seconds": as_points(report.get("seconds")),
                     "timing": report.get("timing") or {}} for report in slowest],
    }


def _relative(file, root):
    try:
        return Path(file).relative_to(root).as_posix()
    except ValueError:
        return Path(file).as_posix()


def _shorten(text, width):
    return text if len(text) <= width else f"{text[:width // 2 - 1]}…{text[-(width - width // 2):]}"


def _bar(count, total):
    return "█" * max(1, round(BAR_WIDTH * count / total)) if count else ""


def summary_text(summary):
    """The summary as lines that fit one screen (about 80 columns)."""
    n = summary["submissions"]
    points = summary["points"]
    statuses = ", ".join(f"{count} {status}" for status, count in summary["statuses"].items())
    lines = [f"{n} notebook(s): {statuses}; mean {points['mean']:g} points per notebook"]
    if summary["exercises"]:
        lines.append("")
        lines.append("score distribution per exercise (bar: share with full points; then points: notebooks)")
        width = max(len(entry["id"]) for entry in summary["exercises"])  # whole names, never cut
        for entry in summary["exercises"]:
            spread = "  ".join(f"{p:g}: {count}" for p, count in entry["distribution"])
            full = dict((p, c) for p, c in entry["distribution"]).get(entry["max_points"], 0)
            lines.append(f"  {entry['lesson']} {entry['id']:<{width}} {_bar(full, entry['graded']):<{BAR_WIDTH}} "
                         f"{spread}  (of {entry['max_points']:g})")
    if summary["hints"]:
        lines.append("")
        lines.append("most common mistakes (hints that fired)")
        width = max(len(hint["hint_id"]) for hint in summary["hints"])
        for hint in summary["hints"]:
            lines.append(f"  {hint['count']:>4}  {hint['hint_id']:<{width}} {', '.join(hint['exercises'])}")
    if summary["slowest"]:
        lines.append("")
        lines.append("slowest notebooks")
        for slow in summary["slowest"]:
            parts = ", ".join(f"{key} {value:.1f}" for key, value in slow["timing"].items()
                              if key != "runs" and isinstance(value, (int, float)) and value >= 0.05)
            lines.append(f"  {slow['seconds']:>7.1f} s  {_shorten(slow['name'], 44)}"
                         + (f"  ({parts})" if parts else ""))
    return "\n".join(lines)
