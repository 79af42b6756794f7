"""The one exception type for mistakes a user can make (paths, files, columns, config)."""


class RaycellError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


class BadData(RaycellError):
    """A value in a data file that cannot be trained on, found while reading it (in a
    worker): the grid ends on its one line, exit code 2, like any other bad input."""


class RunsFailed(Exception):
    """Runs of a grid failed (their errors are in the runs' folders): one line, exit code 1."""


class Interrupted(Exception):
    """The user stopped a grid (Ctrl-C): one line saying where each run stopped, exit 130."""
