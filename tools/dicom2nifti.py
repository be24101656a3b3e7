#!/usr/bin/env python
"""Convert a DICOM series to NIfTI, optionally resampled to a given spacing.

Usage:
    python tools/dicom2nifti.py SRC DST [--spacing X Y Z] [--label] [--series UID]

Examples:
    python tools/dicom2nifti.py /data/case1/T1 case1_t1.nii.gz --spacing 1 1 1
    python tools/dicom2nifti.py /data/case1/seg case1_seg.nii.gz --spacing 1 --label
"""
import logging
import sys

from tfseg.errors import TfsegError
from tfseg.io.convert import build_parser, run_convert


def main(argv=None):
    """Parse `argv`, convert, and return the exit status (0 done, 1 bad input)."""
    args = build_parser(prog="dicom2nifti").parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        path = run_convert(args)
    except TfsegError as exc:
        print(f"dicom2nifti: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
