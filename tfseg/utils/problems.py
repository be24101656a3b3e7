"""What to do when one record of a dataset is bad: the `on_error` policy and the problem log.

A long run must never die on one bad case without saying which, nor skip it silently. Every
dataset finder and loader takes `on_error`:

- ``"raise"``: stop at the first bad record with a `DataError` naming the file;
- ``"skip"``: log a warning naming the file and the reason, leave the record out, and keep it in
  the `ProblemLog` so the caller can print or save the list at the end.

Example:
    >>> log = ProblemLog(on_error="skip")
    >>> log.report("/data/SC-N-2/IM-0898-0040.dcm", "no image for this contour")
    >>> [p.path for p in log.problems]
    ['/data/SC-N-2/IM-0898-0040.dcm']
    >>> ProblemLog(on_error="raise").report("x.dcm", "truncated pixel data")
    Traceback (most recent call last):
    ...
    tfseg.errors.DataError: x.dcm: truncated pixel data
"""
import dataclasses
import itertools
import logging
import re
import threading

from tfseg.errors import ConfigError, DataError

ON_ERROR_POLICIES = ("raise", "skip")

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One bad record: the file at fault and what is wrong with it."""

    path: str
    reason: str

    def __str__(self):
        return f"{self.path}: {self.reason}"


def check_policy(on_error):
    """Return `on_error` if it is a known policy, else raise `ConfigError` listing the choices."""
    if on_error not in ON_ERROR_POLICIES:
        raise ConfigError(f"on_error must be one of {ON_ERROR_POLICIES}, got {on_error!r}")
    return on_error


class ProblemLog:
    """Collects bad records under one `on_error` policy ("raise" or "skip")."""

    def __init__(self, on_error="raise"):
        self.on_error = check_policy(on_error)
        self.problems = []

    def report(self, path, reason):
        """Record that `path` is bad; raises `DataError` under "raise", logs and keeps it under "skip"."""
        if self.on_error == "raise":
            raise DataError(path, reason)
        problem = Problem(str(path), reason)
        logger.warning("skipping %s", problem)
        self.problems.append(problem)

    def report_error(self, error):
        """Same as `report` for a `DataError` already raised by a reader."""
        if self.on_error == "raise":
            raise error
        self.report(error.path, error.reason if error.line is None else f"line {error.line}: {error.reason}")

    def records(self):
        """The skipped files as JSON-ready `[{"path": ..., "reason": ...}]`, in the order found.

        Example:
            >>> log = ProblemLog(on_error="skip")
            >>> log.report("a/t1.nii.gz", "truncated")
            >>> log.records()
            [{'path': 'a/t1.nii.gz', 'reason': 'truncated'}]
        """
        return [{"path": p.path, "reason": p.reason} for p in self.problems]

    def usable(self, records):
        """The records none of whose files (`.images`, `.label`) were reported: what a run really used.

        Example:
            >>> import collections
            >>> Case = collections.namedtuple("Case", "images label")
            >>> log = ProblemLog(on_error="skip")
            >>> log.report("b/t1.nii.gz", "truncated")
            >>> cases = [Case(("a/t1.nii.gz",), "a/seg.nii.gz"), Case(("b/t1.nii.gz",), "b/seg.nii.gz")]
            >>> [c.label for c in log.usable(cases)]
            ['a/seg.nii.gz']
        """
        bad = {p.path for p in self.problems}
        return [r for r in records
                if not bad.intersection(map(str, (*getattr(r, "images", ()), getattr(r, "label", None))))]

    def extend(self, other):
        """Add the problems of another log (e.g. the finder's) to this one."""
        self.problems.extend(other.problems)

    def __len__(self):
        return len(self.problems)

    def summary(self):
        """A multi-line text listing every problem, or an empty string when there were none."""
        if not self.problems:
            return ""
        lines = [f"{len(self.problems)} record(s) skipped:"] + [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def problem_log(problems=None, on_error="raise"):
    """The `ProblemLog` a finder reports to: `problems` when given (its policy wins), else a new one.

    Example:
        >>> problem_log(on_error="skip").on_error
        'skip'
    """
    if problems is None:
        return ProblemLog(check_policy(on_error))
    if not isinstance(problems, ProblemLog):
        raise ConfigError(f"problems must be a tfseg.utils.problems.ProblemLog, got {type(problems).__name__}")
    return problems


# DataErrors raised inside a tf.data function reach Python as a TensorFlow error whose message
# only quotes them; the original is kept here under a token written into that message.
_IN_PIPELINE = {}
_IN_PIPELINE_LOCK = threading.Lock()
_TOKENS = itertools.count(1)
_TOKEN = re.compile(r"\[tfseg data error (\d+)\]")


def pipeline_error(error):
    """The exception to raise inside a `tf.numpy_function`/`tf.py_function` for a `DataError`.

    TensorFlow turns it into an `OpError` quoting its message; `recover_data_error` on that
    error gives back `error` itself, so the caller can raise the one-line `DataError` instead of
    a page of TensorFlow traceback.

    Example:
        >>> wrapped = pipeline_error(DataError("a/t1.nii.gz", "truncated"))
        >>> str(recover_data_error(RuntimeError(f"InvalidArgumentError: {wrapped}")))
        'a/t1.nii.gz: truncated'
    """
    key = next(_TOKENS)
    with _IN_PIPELINE_LOCK:
        _IN_PIPELINE[key] = error
    return DataError(error.path, f"{error.reason} [tfseg data error {key}]")


def recover_data_error(exception):
    """The `DataError` quoted by a TensorFlow error raised from `pipeline_error`, else None."""
    match = _TOKEN.search(str(exception))
    if match is None:
        return None
    with _IN_PIPELINE_LOCK:
        return _IN_PIPELINE.pop(int(match.group(1)), None)
