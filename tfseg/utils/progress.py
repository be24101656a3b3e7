"""Progress display that suits where the output goes: bars on a terminal, plain lines in a log.

A progress bar redraws itself many times a second; in a terminal that is one line, in a log
file (stdout redirected, a batch job, CI) every redraw is kept. `is_terminal` tells the two
apart; `progress_bar` is a tqdm bar on a terminal and, elsewhere, passes the items through and
logs one line when they are done.

Example:
    >>> import io
    >>> is_terminal(io.StringIO())
    False
    >>> list(progress_bar(range(3), "windows", "batch", stream=io.StringIO()))
    [0, 1, 2]
"""
import logging
import sys
import time

logger = logging.getLogger(__name__)

__all__ = ["is_terminal", "progress_bar"]


def is_terminal(stream=None):
    """True when `stream` (default `sys.stdout`) is an interactive terminal.

    Example:
        >>> import io
        >>> is_terminal(io.StringIO())
        False
    """
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


def progress_bar(iterable, desc, unit, stream=None, total=None, **options):
    """Iterate over `iterable` with a progress display suited to `stream`.

    Args:
        iterable: the items.
        desc: what is counted, shown before the bar (and in the log line).
        unit: the unit of one item ("batch", "case").
        stream: where a bar would be drawn; default `sys.stderr` (tqdm's default).
        total: the number of items, when `iterable` has no length.
        **options: passed to `tqdm` on a terminal (e.g. `leave=False`).

    Returns:
        An iterator over the items: a tqdm bar on a terminal; otherwise the items themselves,
        with one INFO log line (`desc: N unit in S s`) after the last.
    """
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, unit=unit, total=total, file=stream, **options)
    return _logged(iterable, desc, unit)


def _logged(iterable, desc, unit):
    started = time.perf_counter()
    count = 0
    for item in iterable:
        count += 1
        yield item
    logger.info("%s: %d %s in %.1f s", desc, count, unit, time.perf_counter() - started)
