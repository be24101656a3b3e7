"""Output file names derived from data (case ids), kept inside the output folder.

A case id comes from a datalist, a folder name or a file name: data, not code. Before it becomes
part of an output path it goes through `safe_name` and `output_path`:

- an id that tries to leave the folder (an absolute path such as `/tmp/x`, `C:\\x`, or a
  `..` component such as `../../x`) is refused with a `DataError`;
- any other character outside letters, digits, `.`, `_` and `-` becomes `_` (so `SC-HF-I-1/IM 48`
  gives `SC-HF-I-1_IM_48`), leading dots are dropped (no hidden files), and overlong ids are
  refused (file systems take 255 bytes);
- the joined path is resolved (symbolic links followed) and must lie inside the resolved folder.

Example:
    >>> safe_name("SC-HF-I-1/IM-0001 0048")
    'SC-HF-I-1_IM-0001_0048'
    >>> output_path("/out/predictions", "BraTS2021_00000", "_seg.nii.gz")
    '/out/predictions/BraTS2021_00000_seg.nii.gz'
    >>> output_path("/out/predictions", "../../x", "_seg.nii.gz")
    Traceback (most recent call last):
    ...
    tfseg.errors.DataError: ../../x: not usable as an output file name: it leaves the output folder (a '..' component); case ids must be plain names
"""
import os
import re

from tfseg.errors import DataError, shorten

MAX_NAME_LENGTH = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _refuse(name, reason):
    raise DataError(shorten(name), f"not usable as an output file name: {reason}; case ids must be plain names")


def safe_name(name):
    """A file name made from a data-derived name (a case id): plain characters, no way out of a folder.

    Args:
        name: the case id (any object; its `str` is used).

    Returns:
        The name with characters other than letters, digits, `.`, `_`, `-` replaced by `_` and
        leading dots removed.

    Raises:
        DataError: the name is empty, an absolute path, has a `..` component, holds a NUL byte,
            or is longer than `MAX_NAME_LENGTH` characters.

    Example:
        >>> safe_name("case 7")
        'case_7'
    """
    text = str(name)
    if not text.strip():
        _refuse(text, "it is empty")
    if "\x00" in text:
        _refuse(text.replace("\x00", "\\0"), "it holds a NUL byte")
    if text.startswith(("/", "\\")) or _DRIVE.match(text) or os.path.isabs(text):
        _refuse(text, "it is an absolute path")
    if ".." in re.split(r"[/\\]", text):
        _refuse(text, "it leaves the output folder (a '..' component)")
    if len(text) > MAX_NAME_LENGTH:
        _refuse(text, f"it is {len(text)} characters long, more than {MAX_NAME_LENGTH}")
    cleaned = _UNSAFE.sub("_", text).lstrip(".")
    return cleaned or "_"


def output_path(folder, name, suffix=""):
    """`folder/safe_name(name) + suffix`, checked to stay inside `folder` once resolved.

    Args:
        folder: the output folder (need not exist yet).
        name: the data-derived part of the file name (a case id).
        suffix: what follows it, e.g. `"_seg.nii.gz"` or `".png"` (written by the program, not data).

    Returns:
        The path as a str.

    Raises:
        DataError: `name` is refused by `safe_name`, or the resolved path is not inside `folder`
            (e.g. `folder/<name>` is a symbolic link pointing elsewhere).

    Example:
        >>> output_path("overlays", "a/b", ".png")
        'overlays/a_b.png'
    """
    base = os.fspath(folder)
    path = os.path.join(base, safe_name(name) + suffix)
    check_inside(base, path)
    return path


def check_inside(folder, path):
    """Raise a DataError unless `path`, resolved (links followed), lies inside resolved `folder`.

    Example:
        >>> check_inside("/out", "/out/a.png")
        >>> check_inside("/out", "/out/../etc/a.png")
        Traceback (most recent call last):
        ...
        tfseg.errors.DataError: /out/../etc/a.png: resolves to /etc/a.png, outside the output folder /out
    """
    root = os.path.realpath(os.fspath(folder))
    resolved = os.path.realpath(os.fspath(path))
    if os.path.commonpath([root, resolved]) != root or resolved == root:
        raise DataError(path, f"resolves to {resolved}, outside the output folder {root}")
