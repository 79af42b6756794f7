"""The one exception type for mistakes a user can make (paths, files, columns, config)."""


class RaycellError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


class RunsFailed(Exception):
    """Runs of a grid failed (their errors are in the runs' folders): one line, exit code 1."""
