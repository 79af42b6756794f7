"""The one exception type for mistakes a user can make (paths, files, columns, config)."""


class RaycellError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""
