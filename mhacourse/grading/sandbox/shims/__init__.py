"""Stand-ins that the grader binds, inside the sandbox, where a notebook imports the checker or the
explorer (``mhacourse.grading``, ``mhacourse.viz``). They compute nothing: a submission's
``check(...)`` cells and explorer cells run without error and without reaching a reference."""
