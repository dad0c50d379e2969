"""The outcome of a check: per-case results and a report in text and HTML."""

import html
from dataclasses import dataclass, field

__all__ = ["CaseResult", "CheckResult"]

# Case and check statuses.
PASSED = "passed"
FAILED = "failed"  # wrong output (values, shape, dtype, NaN, type)
ERROR = "error"  # the answer raised an exception
NOT_IMPLEMENTED = "not implemented"
TIMEOUT = "timeout"
INVALID = "invalid"  # not an answer at all: wrong kind of object, unknown id

_ICON = {PASSED: "✓", FAILED: "✗", ERROR: "✗", NOT_IMPLEMENTED: "…", TIMEOUT: "⏱", INVALID: "✗"}


@dataclass
class CaseResult:
    """One case of a check.

    Attributes:
        name (str): What the case tries, e.g. ``"batch 2, 3 heads, 5 queries, 7 keys"``.
        status (str): ``"passed"``, ``"failed"``, ``"error"``, ``"not implemented"``
            or ``"timeout"``.
        message (str): What went wrong, empty when the case passed.
        comparisons (list[Comparison]): Exact / close / max difference per output array.
        expected (str): A description of the expected output, e.g. its shape.
        got (str): A description of what the answer returned.
        hint_id (str or None): The recognised mistake, if any.
        hint (str or None): What to fix for that mistake.
        seconds (float): How long the answer took.
    """

    name: str
    status: str
    message: str = ""
    comparisons: list = field(default_factory=list)
    expected: str = ""
    got: str = ""
    hint_id: str = None
    hint: str = None
    seconds: float = 0.0
    nudge: str = None

    @property
    def passed(self):
        return self.status == PASSED


@dataclass
class CheckResult:
    """The result of ``check(exercise_id, answer)``.

    Displays as an HTML report in Jupyter and as plain text elsewhere.

    Attributes:
        exercise_id (str): The exercise checked.
        title (str): Its title.
        passed (bool): True when every case passed.
        status (str): ``"passed"``, ``"failed"``, ``"error"``,
            ``"not implemented"``, ``"timeout"`` or ``"invalid"``.
        cases (list[CaseResult]): One result per case that ran.
        message (str): A summary line for the whole check.
        max_points (int): Points the exercise is worth.
        hint_id (str or None): The mistake that best explains the failures.
        hint (str or None): Its explanation, the specific fix (tier 2).
        nudge (str or None): Where to look, without the fix (tier 1).
        tier (int): 1 shows the nudge and offers more help; 2 shows the fix.
        answer_name (str): The answer's name, for the "more help" line.
    """

    exercise_id: str
    title: str
    passed: bool
    status: str
    cases: list = field(default_factory=list)
    message: str = ""
    max_points: int = 1
    hint_id: str = None
    hint: str = None
    nudge: str = None
    tier: int = 1
    answer_name: str = ""

    @property
    def points(self):
        """``max_points`` if the check passed, else 0 (no partial credit)."""
        return self.max_points if self.passed else 0

    @property
    def hint_ids(self):
        """Every recognised mistake, the main one first, without repeats."""
        ids = [self.hint_id] + [c.hint_id for c in self.cases]
        return list(dict.fromkeys(i for i in ids if i))

    @property
    def n_passed(self):
        return sum(c.passed for c in self.cases)

    def _headline(self):
        verdict = "PASSED" if self.passed else self.status.upper()
        title = f" ({self.title})" if self.title else ""
        counted = f"{self.n_passed}/{len(self.cases)} cases, " if self.cases else ""
        return f"[{verdict}] {self.exercise_id}{title} — {counted}{self.points}/{self.max_points} points"

    def shown_hint(self, hint, nudge):
        """The text shown for a hint at this result's tier."""
        if self.tier >= 2 or not nudge:
            return hint
        return nudge

    def more_help(self):
        """The line offering the specific fix, or ``""`` (tier 2, or nothing more to say)."""
        if self.tier >= 2 or not self.hint or not self.nudge or self.nudge == self.hint:
            return ""
        name = self.answer_name or "answer"
        return f"More help: check({self.exercise_id!r}, {name}, hint=2)"

    def _case_lines(self, case):
        """The summary after the case name, and detail lines (each without markup)."""
        if case.passed:
            summary = case.got or case.expected
            if case.comparisons:
                if all(c.exact for c in case.comparisons):
                    verdict = "exact"
                else:
                    worst = max(c.max_abs_diff for c in case.comparisons)
                    verdict = f"close (max abs diff {worst:.2g})"
                summary = f"{summary}: {verdict}" if summary else verdict
            return summary or "holds", []
        details = []
        if case.expected and case.got != case.expected:
            details.append(f"expected {case.expected}" + (f", got {case.got}" if case.got else ""))
        details.extend(c.summary() for c in case.comparisons if not c.close)
        if case.message:
            details.append(case.message)
        shown = self.shown_hint(case.hint, case.nudge)
        if shown and case.hint_id != self.hint_id:
            details.append(f"Hint: {shown}")
        return case.status, details

    def report(self):
        """The report as plain text."""
        lines = [self._headline()]
        if self.message:
            lines.append(self.message)
        for case in self.cases:
            summary, details = self._case_lines(case)
            lines.append(f"  {_ICON[case.status]} {case.name}: {summary}")
            for detail in details:
                lines.extend(f"      {line}" for line in detail.splitlines())
        shown = self.shown_hint(self.hint, self.nudge)
        if shown:
            lines.append(f"Hint: {shown}")
        more_help = self.more_help()
        if more_help:
            lines.append(more_help)
        return "\n".join(lines)

    def __str__(self):
        return self.report()

    def __repr__(self):
        return f"<CheckResult {self.exercise_id}: {self.status}, {self.points}/{self.max_points} points>"

    def _repr_pretty_(self, printer, cycle):
        printer.text(self.report())

    def _repr_html_(self):
        colour = "#1a7f37" if self.passed else "#b42318"
        esc = html.escape
        rows = []
        for case in self.cases:
            summary, details = self._case_lines(case)
            cell = "<br>".join(
                f"<b>Hint:</b> {esc(d[6:])}" if d.startswith("Hint: ") else
                f"<code style='white-space:pre-wrap'>{esc(d)}</code>" if "\n" in d else esc(d)
                for d in details)
            rows.append(
                f"<tr><td>{_ICON[case.status]}</td><td style='text-align:left'>{esc(case.name)}</td>"
                f"<td style='text-align:left'>{esc(summary)}</td><td style='text-align:left'>{cell}</td></tr>"
            )
        table = ""
        if rows:
            table = ("<table><thead><tr><th></th><th>case</th><th>result</th><th>details</th>"
                     "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
        message = f"<p>{esc(self.message)}</p>" if self.message else ""
        shown = self.shown_hint(self.hint, self.nudge)
        hint = f"<p><b>Hint:</b> {esc(shown)}</p>" if shown else ""
        more_help = self.more_help()
        if more_help:
            hint += f"<p><i>{esc(more_help)}</i></p>"
        return (
            f"<div class='mhacourse-check' style='border-left:4px solid {colour};padding-left:8px'>"
            f"<p style='color:{colour};font-weight:bold'>{esc(self._headline())}</p>"
            f"{message}{table}{hint}</div>"
        )
