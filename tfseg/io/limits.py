"""How much memory a reader may allocate for one volume, and whether a file can hold what it claims.

A damaged or hostile header can claim a volume far larger than its file (a 74 KB `.nii.gz`
whose header says 1300^3 int16 voxels): the readers check the claim here *before* allocating,
against the file itself and against a limit:

- the limit is `TFSEG_MAX_VOLUME_BYTES` (an environment variable, bytes, e.g. `16000000000`),
  else `DEFAULT_MAX_VOLUME_BYTES` (8 GiB); it bounds the array a reader returns;
- an uncompressed file must be at least as long as the header's data offset plus the data;
- a gzip file cannot inflate more than 1032 times (deflate's largest ratio), and when its ISIZE
  trailer does not match the claimed size, the stream is inflated and counted (without keeping
  it) before anything is allocated, so a truncated file is refused up front.

Example:
    >>> max_volume_bytes() >= 2**30
    True
    >>> check_volume_bytes("big.nii", 10**15)
    Traceback (most recent call last):
    ...
    tfseg.errors.DataError: big.nii: the volume needs 1e+06 GB, more than the 8.59 GB a volume may take (set TFSEG_MAX_VOLUME_BYTES to raise the limit)
"""
import os
import zlib

from tfseg.errors import ConfigError, DataError

MAX_VOLUME_BYTES_ENV = "TFSEG_MAX_VOLUME_BYTES"
DEFAULT_MAX_VOLUME_BYTES = 8 << 30
DEFLATE_MAX_RATIO = 1032  # the most one byte of a deflate stream can inflate to
_CHUNK = 1 << 20


def max_volume_bytes():
    """The largest volume (in bytes) a reader may allocate: `$TFSEG_MAX_VOLUME_BYTES`, else 8 GiB.

    Raises:
        ConfigError: the environment variable is not a positive whole number.
    """
    text = os.environ.get(MAX_VOLUME_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_VOLUME_BYTES
    try:
        value = int(float(text)) if any(c in text for c in ".eE") else int(text)
    except (ValueError, OverflowError):
        value = 0
    if value <= 0:
        raise ConfigError(f"{MAX_VOLUME_BYTES_ENV} must be a positive number of bytes, got {text[:80]!r}")
    return value


def _gb(n_bytes):
    return f"{n_bytes / 1e9:.3g} GB"


def check_volume_bytes(path, n_bytes):
    """Refuse a volume that would take more than `max_volume_bytes()` in memory.

    Args:
        path: the file, for the message.
        n_bytes: the size of the array the reader would allocate.

    Raises:
        DataError: `n_bytes` is above the limit.
    """
    limit = max_volume_bytes()
    if n_bytes > limit:
        raise DataError(path, f"the volume needs {_gb(n_bytes)}, more than the {_gb(limit)} a volume may take "
                              f"(set {MAX_VOLUME_BYTES_ENV} to raise the limit)")


def check_file_holds(path, n_bytes, what="voxel data"):
    """Refuse a file that cannot hold the first `n_bytes` bytes its header needs (offset + data).

    Uncompressed files are measured; `.gz` files are bounded by deflate's largest ratio, then
    checked with their ISIZE trailer, and inflated and counted (nothing kept) when it disagrees.

    Args:
        path: the file.
        n_bytes: how many (uncompressed) bytes the file must hold.
        what: what the bytes are, for the message.

    Raises:
        DataError: the file is shorter than that, or its gzip stream is damaged.

    Example:
        >>> import gzip, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "v.nii.gz")
        >>> with gzip.open(path, "wb") as handle:
        ...     _ = handle.write(bytes(1000))
        >>> check_file_holds(path, 1000)
        >>> check_file_holds(path, 2000)
        Traceback (most recent call last):
        ...
        tfseg.errors.DataError: ...v.nii.gz: the file is truncated or corrupt: its header claims 2000 bytes (with the voxel data), the gzip stream inflates to 1000
    """
    name = os.fspath(path)
    size = os.path.getsize(name)
    if not name.lower().endswith(".gz"):
        if size < n_bytes:
            raise DataError(path, f"the file is truncated or corrupt: its header claims {n_bytes} bytes (with "
                                  f"the {what}), the file has {size}")
        return
    if n_bytes > size * DEFLATE_MAX_RATIO + 1024:
        raise DataError(path, f"the file is truncated or corrupt: its header claims {_gb(n_bytes)} (with the "
                              f"{what}), more than a gzip file of {size} bytes can hold")
    with open(name, "rb") as handle:
        if size >= 18:
            handle.seek(size - 4)
            if int.from_bytes(handle.read(4), "little") == n_bytes % 2**32:
                return
        handle.seek(0)
        held = _inflated_size(handle, n_bytes, path)
    if held < n_bytes:
        raise DataError(path, f"the file is truncated or corrupt: its header claims {n_bytes} bytes (with the "
                              f"{what}), the gzip stream inflates to {held}")


def _inflated_size(handle, enough, path):
    """Bytes a (multi-member) gzip stream inflates to, counting stops at `enough`; nothing is kept."""
    total = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while total < enough:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            while chunk and total < enough:
                total += len(inflater.decompress(chunk, _CHUNK))
                chunk = inflater.unconsumed_tail
                if inflater.eof:  # the next member, if any, starts after this one
                    rest = inflater.unused_data + chunk
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    chunk = rest if rest.strip(b"\x00") else b""
    except zlib.error as exc:
        raise DataError(path, f"the file is truncated or corrupt: damaged gzip stream after {total} bytes "
                              f"({exc})") from None
    return total
