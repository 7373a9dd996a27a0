"""The one exception every command turns into a one-line ``error:`` message and exit status 2."""


class UserError(Exception):
    """Bad input, a busy or stale cache, a mismatched model: something the user can fix, so no traceback."""


def words(e: BaseException) -> str:
    """What an error says, without the traceback a DataLoader worker's exception carries when torch
    raises it again in the main process ("Caught X in DataLoader worker process 0. Original Traceback
    ... X: <what it said>")."""
    text = str(e)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    name = type(e).__name__
    for prefix in (f"{type(e).__module__}.{name}: ", f"{name}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last
