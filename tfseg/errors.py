"""The one exception family of tfseg, raised at the boundary where bad input is found.

Example:
    >>> from tfseg.errors import DataError
    >>> str(DataError("IM-0001-0048.dcm", "no pixel data"))
    'IM-0001-0048.dcm: no pixel data'
    >>> str(DataError("c.txt", "expected two numbers", line=3))
    'c.txt:3: expected two numbers'
"""


class TfsegError(Exception):
    """Base class of every error tfseg raises on purpose."""


class DataError(TfsegError, ValueError):
    """A file (or one record of a dataset) is missing, unreadable or malformed.

    Args:
        path: the offending file or folder.
        reason: what is wrong with it, in words a user can act on.
        line: optional 1-based line number inside a text file.
    """

    def __init__(self, path, reason, line=None):
        self.path = str(path)
        self.reason = reason
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.line))


class ConfigError(TfsegError, ValueError):
    """A configuration value (JSON config, CLI flag or builder argument) is invalid."""


def shorten(value, limit=80):
    """`value` as text for an error message, cut to `limit` characters (ending in "...").

    Messages quote what was found in a file; a garbage token can be megabytes long.

    Example:
        >>> shorten("9" * 100, limit=10)
        '9999999...'
    """
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
