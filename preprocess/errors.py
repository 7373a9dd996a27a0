"""The one exception the CLI turns into a one-line message and a non-zero exit."""


class PreprocessError(Exception):
    """Bad input or a busy cache: something the user can fix, so no traceback."""
