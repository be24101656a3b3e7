"""BraTS cases for the 2D workflows: from a release folder or synthetic data, split by patient.

The 2D workflows (BraTS-2D patches, slices for UNet++) need three splits (train, validation, test)
and a choice of modalities, and may have to leave out patients that a later stage uses (W5 drops
the patients of the classification data to avoid leakage).

Example:
    >>> section = CaseSource()
    >>> section.synthetic_cases, section.val_fraction
    (16, 0.15)
"""
import dataclasses
import logging
import os

from tfseg.errors import ConfigError
from tfseg.training.config import at_least, choice, in_range, positive

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class CaseSource:
    """Where the BraTS cases are and how they are split.

    Attributes:
        data_dir: a BraTS release folder (2018-2021 layouts; modalities are picked by name).
        synthetic_dir: where the synthetic dataset goes when no `data_dir` is given
            (default `<output_dir>/synthetic_data`).
        synthetic_cases: cases of the synthetic dataset.
        synthetic_shape: (x, y, z) size of the synthetic volumes, in NIfTI order.
        modalities: the channels, in order.
        exclude_cases: case ids (or a text file with one per line) left out entirely.
        val_fraction: patients for validation.
        test_fraction: patients for the final test.
        on_error: "skip" or "raise" for a bad case.
    """

    data_dir: str | None = None
    synthetic_dir: str | None = None
    synthetic_cases: int = at_least(1, default=16)
    synthetic_shape: tuple[int, ...] = positive((96, 96, 40))
    modalities: tuple[str, ...] = ("flair", "t1ce", "t2")
    exclude_cases: list | str | None = None
    val_fraction: float = in_range(0.0, 1.0, default=0.15)
    test_fraction: float = in_range(0.0, 1.0, default=0.15)
    on_error: str = choice("skip", ("skip", "raise"))


@dataclasses.dataclass
class CaseSplit:
    """Train / validation / test cases, the problems met finding them, and whether they are synthetic."""

    train: list
    val: list
    test: list
    problems: object
    synthetic: bool


def excluded_ids(exclude):
    """The set of case ids to leave out: a list, or a text file with one id per line ('#' comments)."""
    if not exclude:
        return set()
    if isinstance(exclude, str):
        from tfseg.errors import DataError

        try:
            with open(exclude, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except OSError as error:
            raise DataError(exclude, f"cannot read the list of excluded cases: {error.strerror or error}") from error
        return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}
    return {str(case) for case in exclude}


def find_cases(source, output_dir, seed=0):
    """Find the cases of `source` (a `CaseSource`), drop the excluded ones, split by patient.

    Returns:
        A `CaseSplit`.

    Raises:
        ConfigError: no case is left, or too few patients for the asked fractions.
    """
    from tfseg.datasets import brats, splits, synthetic
    from tfseg.utils.problems import ProblemLog

    problems = ProblemLog(source.on_error)
    modalities = tuple(source.modalities)
    use_synthetic = source.data_dir is None
    if use_synthetic:
        root = source.synthetic_dir or os.path.join(output_dir, "synthetic_data")
        written = synthetic.ensure_brats(root, num_cases=source.synthetic_cases, shape=tuple(source.synthetic_shape),
                                         seed=seed)
        cases = written.find(modalities=modalities, on_error=source.on_error, problems=problems)
        logger.info("using the synthetic BraTS dataset in %s", root)
    else:
        cases = brats.find_brats(source.data_dir, modalities=modalities, on_error=source.on_error, problems=problems)
    drop = excluded_ids(source.exclude_cases)
    if drop:
        before = len(cases)
        cases = [c for c in cases if c.case_id not in drop]
        logger.info("left out %d excluded case(s)", before - len(cases))
    if not cases:
        raise ConfigError("no BraTS case left to train on (check the data folder and exclude_cases)")
    split = splits.split_by_patient(cases, val_fraction=source.val_fraction, test_fraction=source.test_fraction,
                                    seed=seed)
    logger.info("%d training, %d validation and %d test cases", len(split.train), len(split.val), len(split.test))
    return CaseSplit(list(split.train), list(split.val), list(split.test), problems, use_synthetic)

