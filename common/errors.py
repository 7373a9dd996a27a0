"""The one exception every command turns into a one-line ``error:`` message and exit status 2."""


class UserError(Exception):
    """Bad input, a busy or stale cache, a mismatched model: something the user can fix, so no traceback."""
