"""The decode stage: records to in-memory arrays, in parallel, under the dataset's `on_error` policy.

2D datasets such as Sunnybrook (a few thousand 256x256 slices at most) are decoded once, in a
thread pool, and then streamed from memory by tf.data: the decode cost is paid once per run,
not once per epoch, and a bad file is reported with its path before training starts instead of
killing an epoch half-way.

Example:
    >>> import numpy as np
    >>> def load(record):
    ...     if record == "bad":
    ...         raise DataError(record, "cannot decode")
    ...     return np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8)
    >>> samples = load_samples(["a", "bad", "b"], load, on_error="skip", workers=2)
    >>> samples.records, [str(p) for p in samples.problems.problems]
    (['a', 'b'], ['bad: cannot decode'])
"""
import concurrent.futures
import dataclasses
import logging
import os

from tfseg.utils.problems import ProblemLog
from tfseg.errors import DataError
from tfseg.utils.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedSamples:
    """Decoded samples with the records they came from and the problems met on the way."""

    images: list
    masks: list
    records: list
    problems: ProblemLog

    def __len__(self):
        return len(self.records)


def default_workers():
    """Decode threads: the machine's cores, at least 1 and at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def load_samples(records, load_fn, on_error="skip", workers=None, progress=False):
    """Decode every record with `load_fn(record) -> (image, mask)` in a thread pool.

    Args:
        records: the dataset's records (anything `load_fn` accepts), in order.
        load_fn: returns `(image, mask)` numpy arrays or raises `DataError` for a bad record.
        on_error: "skip" (log, record in `problems`, leave the record out) or "raise".
        workers: number of threads; defaults to the number of cores.
        progress: show a progress bar while decoding (one log line when not on a terminal).

    Returns:
        `LoadedSamples` in the order of `records`, without the records that failed under "skip";
        its `problems` log lists those (merge it with the finder's log to report both).

    Raises:
        DataError: under "raise", for the first bad record in order; also when no record is left.
    """
    log = ProblemLog(on_error)
    workers = workers or default_workers()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(load_fn, record) for record in records]
        iterator = futures
        if progress:
            iterator = progress_bar(futures, "decode", "img", leave=False)
        images, masks, kept = [], [], []
        for record, future in zip(records, iterator):
            try:
                image, mask = future.result()
            except DataError as error:
                if on_error == "raise":
                    for pending in futures:
                        pending.cancel()
                log.report_error(error)
                continue
            images.append(image)
            masks.append(mask)
            kept.append(record)
    if not kept:
        raise DataError("<dataset>", f"none of the {len(records)} records could be loaded; "
                        f"first problems: {'; '.join(str(p) for p in log.problems[:3])}")
    logger.info("decoded %d of %d records (%d skipped)", len(kept), len(records), len(records) - len(kept))
    return LoadedSamples(images, masks, kept, log)
