"""The checks, one module per lesson; importing this package registers them all."""

from . import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08  # noqa: F401
