"""What a student sees: a feedback page opened in a real Chromium, driven by Playwright.

The page is written by ``mhacourse.grading.feedback`` for a report whose
exercise passed its visible cases but failed two of three hidden ones, with a
failed code cell whose error carries HTML. The test reads the rendered text,
not the HTML source: hidden cases are counted, never named; nothing claims
that everything passed; the notebook's text is shown, not run; the page loads
nothing. Debian's Chromium through ``tests/browser_harness.py`` (no
``playwright install``), one browser for the module.
"""

import os
from pathlib import Path

import pytest

from mhacourse.grading.classroom import feedback
from tests.browser_harness import chromium, missing_browser
from tests.test_classroom import HIDDEN_MESSAGE, HIDDEN_NAME, class_reports

ATTACK = "<img src=x onerror=\"document.title='pwned'\">"


@pytest.fixture(scope="module")
def student_view(tmp_path_factory):
    """(visible text, page facts) of alice's and bob's feedback pages."""
    reason = missing_browser()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("feedback")
    reports = class_reports()
    reports[1]["cells"][0]["error"] += " " + ATTACK
    names = ["alice", "bob"]
    feedback.write_feedback(reports[:2], names, folder)
    seen = {}
    with chromium(folder / "profile", downloads=False) as browser:
        page = browser.pages[0] if browser.pages else browser.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        for name in names:
            requests.clear()
            page.goto((folder / f"{name}.html").as_uri())
            sections = page.locator("section.exercise")
            seen[name] = {
                "text": page.inner_text("body"),
                "title": page.title(),
                "requests": list(requests),
                "images": page.locator("img").count(),
                "sections": {sections.nth(i).get_attribute("data-exercise"): {
                    "text": sections.nth(i).inner_text(),
                    "border": sections.nth(i).evaluate("e => getComputedStyle(e).borderLeftColor"),
                } for i in range(sections.count())},
            }
    return seen


def test_hidden_cases_are_counted_not_shown(student_view):
    alice = student_view["alice"]
    split = alice["sections"]["split_heads"]["text"]
    assert "2 hidden checks failed (of 3)" in split
    assert "batch 2, 3 heads" in split and "batch 1, 1 head" in split  # visible cases are listed
    for secret in (HIDDEN_NAME, HIDDEN_MESSAGE, "L_q=13", "secret"):
        assert secret not in alice["text"]


def test_nothing_says_passed_while_a_hidden_case_failed(student_view):
    alice = student_view["alice"]
    split = alice["sections"]["split_heads"]
    assert "the visible checks passed, but 2 hidden checks failed" in split["text"]
    assert "0 / 1 points" in split["text"]
    assert "Every check passed" not in alice["text"]
    assert split["border"] == "rgb(180, 35, 24)"  # red, like every failed exercise
    assert alice["sections"]["merge_heads"]["border"] == "rgb(26, 127, 55)"
    assert "Hint: Reshape to (B, L, H, D_h) first" in split["text"]
    assert "1 / 2 points" in alice["text"]


def test_failed_cells_show_their_error_as_text(student_view):
    bob = student_view["bob"]
    assert "Cell 5 raised an error" in bob["text"]
    assert "NameError: name 'mx' is not defined" in bob["text"]
    assert ATTACK in bob["text"]  # shown to the student as text ...
    assert bob["images"] == 0 and bob["title"] == "Feedback: 02_many_heads.ipynb"  # ... never run


def test_the_page_is_self_contained(student_view):
    for name, view in student_view.items():
        assert len(view["requests"]) == 1 and view["requests"][0].endswith(f"/{name}.html")


ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "feedback"


def test_screenshot_of_a_failed_visible_case_shows_expected_vs_got(tmp_path):
    """A failed visible case, as the student's Chromium draws it: expected vs got, the first
    difference, and nothing for the instructor (saved as artifacts/feedback/failed_visible_case.png)."""
    reason = missing_browser()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    failed = {"name": "batch 2, 3 heads, 5 queries", "status": "failed", "hidden": False, "message": "",
              "hint_id": "transposed_heads", "expected": "mx.array float32 (2, 3, 5, 8)",
              "got": "mx.array float32 (2, 3, 5, 8)",
              "difference": "output: first difference at index (0, 1, 0, 0): got 0.25, expected -1.5 "
                            "(largest difference 3.2)"}
    rows = [{"id": "split_heads", "answer_name": "split_heads", "max_points": 1.0, "defined": True, "passed": False,
             "points": 0.0, "report": "", "error": None, "tampered": [], "policy": [], "cases": [failed],
             "hint_id": "transposed_heads", "hint": "Reshape to (B, L, H, D_h) first, then swap axes 1 and 2."}]
    report = {"file": "02_many_heads.ipynb", "lesson": "02", "status": "ok", "detail": "needs review: x",
              "total": 0.0, "max": 1.0, "exercises": rows, "cells": [], "flags": ["unsandboxed", "unmatched"],
              "seconds": 1.0}
    feedback.write_feedback([report], ["alice"], tmp_path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "failed_visible_case.png"
    with chromium(tmp_path / "profile", downloads=False) as browser:
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_viewport_size({"width": 900, "height": 700})
        page.goto((tmp_path / "alice.html").as_uri())
        text = page.inner_text("body")
        page.screenshot(path=str(shot), full_page=True)
    assert "expected: mx.array float32 (2, 3, 5, 8)" in text and "got: mx.array float32" in text
    assert "first difference at index (0, 1, 0, 0): got 0.25, expected -1.5" in text
    for word in ("unsandboxed", "unmatched", "needs review", "--"):
        assert word not in text
    assert shot.stat().st_size > 5000
