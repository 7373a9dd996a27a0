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
    lines = text.rstrip().splitlines()
    name = type(e).__name__
    for k in range(len(lines) - 1, -1, -1):  # the last line naming the error starts its message (which may run on)
        for prefix in (f"{type(e).__module__}.{name}: ", f"{name}: "):
            if lines[k].startswith(prefix):
                return "\n".join([lines[k][len(prefix):], *lines[k + 1:]])
    return lines[-1]


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``, plural unless the count is 1: "1 piece", "2 pieces", "0 pieces"."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
