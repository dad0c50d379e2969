"""What runs inside the grading sandbox, and nothing else.

This folder is the whole of the grader that a submission's process can see
(besides MLX, NumPy and the course stages of earlier lessons): the harness
that runs the cells and calls the answers (:mod:`.harness`), the ways an
answer is called (:mod:`.drivers`, shared with the trusted judge so that both
call answers and references alike) and the plain-data codec of the outputs
(:mod:`.codec`). Nothing here imports the references, the checks, the hidden
cases, the policy or anything else that judges: the trust line runs along this
folder's edge.
"""
