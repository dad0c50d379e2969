"""The course's exercises, one module per lesson.

Each module declares its exercises whole, in a list ``EXERCISES``: reference,
visible cases, hidden-case builder, known mistakes with their hints,
properties, policy (``forbidden``) and points. :mod:`mhacourse.grading.registry`
collects them; nothing here imports the registry.
"""
