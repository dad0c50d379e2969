"""The batch grader: a class's notebooks to grades.csv, top-down.

============  ===========================================================
module        what it does
============  ===========================================================
cli           ``mhacourse grade``: options, output checks, the run
submissions   read each file: notebook, lesson, cells (never runs it)
job           the lesson's exercises, inputs from the secret, the course
              view, the policy read from the source
pool          many submissions, ``--jobs`` at a time
report        one submission: audit, run, judge each exercise, status
run           the sandbox run, reruns past cells that kill or hang it
isolation     bubblewrap, the unprivileged uid, limits, the event pipe
view          the course as the sandbox sees it (no reference)
outputs       CSV, JSON reports, the journal (``--resume``)
============  ===========================================================

What runs inside the sandbox is :mod:`mhacourse.grading.sandbox`; the exports
for Canvas and Gradescope, feedback pages and shards are
:mod:`mhacourse.grading.classroom`.
"""
