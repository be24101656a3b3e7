"""Write files and folders so that nothing is ever left half-written.

Everything is first written under a temporary name in the destination's own folder (so the final
rename stays on one file system), flushed to disk, and only then renamed onto the destination. A
crash or an exception leaves either the old content or the new one, never a mix; a failed write
removes its temporary files.

Example:
    >>> import json, os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "state.json")
    >>> atomic_write_json(path, {"epoch": 3})
    >>> json.load(open(path))
    {'epoch': 3}
    >>> with atomic_path(os.path.join(folder, "run")) as tmp:
    ...     os.makedirs(tmp)
    ...     _ = open(os.path.join(tmp, "a.txt"), "w").write("done")
    >>> sorted(os.listdir(folder))
    ['run', 'state.json']
"""
import contextlib
import json
import logging
import os
import re
import shutil
import time
import uuid

from tfseg.errors import ConfigError, TfsegError

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
# `.tmp-<pid>-<token>-<name>` (atomic_path) and `.tmp-export-<pid>-<random>` / `.tmp-old-<pid>-<random>`
# (SavedModel staging folders): the writer's process id follows the prefix.
_TEMP_NAME = re.compile(r"^\.tmp-(?:export-|old-)?(\d+)-")
_LEGACY_TEMP = re.compile(r"^\.tmp-(?:export-|old-)")
#: Temporary entries without a process id are stale once they are this old (seconds).
STALE_AFTER_SECONDS = 3600


def _remove(path):
    """Delete a file, link or folder tree if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _process_alive(pid):
    """Whether a process with this id runs on this machine (True when it cannot be told)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def clean_stale_temporaries(folder, max_age=STALE_AFTER_SECONDS):
    """Delete what interrupted atomic writes left in `folder`; returns the names deleted.

    A write killed before its rename leaves a `.tmp-<pid>-...` file or folder (see `atomic_path`)
    or a `.tmp-export-<pid>-...` SavedModel staging folder. Such an entry is stale when its
    writer is no longer running; an entry without a process id (older tfseg) when it is older
    than `max_age` seconds. Entries of running writers (this process included) are kept, so a
    concurrent write is never disturbed. Only the folder itself is scanned, not its subfolders.

    Args:
        folder: the folder to clean; a missing folder is fine.
        max_age: seconds after which a temporary entry without a process id is stale.

    Returns:
        The sorted names deleted.

    Example:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(folder, ".tmp-999999999-0a1b2c3d-ckpt-0003"))
        >>> clean_stale_temporaries(folder)
        ['.tmp-999999999-0a1b2c3d-ckpt-0003']
    """
    folder = os.fspath(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    now = time.time()
    for name in sorted(names):
        match = _TEMP_NAME.match(name)
        path = os.path.join(folder, name)
        if match:
            stale = not _process_alive(int(match.group(1)))
        elif _LEGACY_TEMP.match(name):
            try:
                stale = now - os.lstat(path).st_mtime > max_age
            except OSError:
                continue
        else:
            continue
        if stale:
            logger.info("deleting %s, left by an interrupted write", path)
            _remove(path)
            removed.append(name)
    return removed


def _fsync_file(path):
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path):
    """Flush a folder's entries (the names in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path):
    """Flush a file, or every file and folder under a folder, to disk."""
    if not os.path.isdir(path):
        _fsync_file(path)
        return
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                _fsync_file(full)
        _fsync_dir(root)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success move what was written there onto `path`.

    Write a file or create a folder at the yielded path. When the block ends without an
    exception, its content is flushed to disk and renamed onto `path`. A file replaces the old
    file in one `os.replace`. A folder (or a file replacing a folder) cannot be swapped in one
    step: the old entry is first renamed aside, the new one moved in, then the old one deleted.
    When the block raises, the temporary path is removed and `path` is left untouched.

    The temporary name ends with the destination's name (`.tmp-<id>-model.weights.h5`), so
    writers that check the suffix (Keras' `.keras`, `.weights.h5`) accept it.

    Args:
        path: the destination file or folder; its parent folder is created if needed.

    Yields:
        A temporary path (str) in the same folder; nothing exists there yet.

    Raises:
        TfsegError: the block wrote nothing at the temporary path.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
        >>> with atomic_path(path) as tmp:
        ...     _ = open(tmp, "w").write("hello")
        >>> open(path).read()
        'hello'
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = os.path.join(parent, f"{TEMP_PREFIX}{token}-{name}")
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise TfsegError(f"{path}: nothing was written to the temporary path {tmp}")
        _fsync_tree(tmp)
        if os.path.isdir(tmp) or os.path.isdir(path):
            _swap_in(tmp, path, os.path.join(parent, f"{TEMP_PREFIX}{token}-old-{name}"))
        else:
            os.replace(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        _remove(tmp)
        raise


def _swap_in(new, path, aside):
    """Move `new` onto `path` when either is a folder: old aside, new in, old deleted."""
    if os.path.lexists(path):
        os.rename(path, aside)
        try:
            os.rename(new, path)
        except BaseException:
            os.rename(aside, path)  # put the old content back
            raise
        _remove(aside)
    else:
        os.rename(new, path)


def atomic_write_text(path, text, encoding="utf-8"):
    """Write `text` to `path` atomically (temporary file, fsync, rename).

    Args:
        path: the destination file.
        text: the full content.
        encoding: the text encoding.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> atomic_write_text(path, "one line\\n")
        >>> open(path).read()
        'one line\\n'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding) as handle:
            handle.write(text)


def _json_default(value):
    """Turn numpy scalars and arrays (metric values, seeds) into plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def atomic_write_json(path, obj, indent=2, sort_keys=False):
    """Write `obj` as JSON to `path` atomically; numpy values are converted to plain numbers.

    Args:
        path: the destination file.
        obj: a JSON-serializable object (numpy scalars and arrays allowed).
        indent: JSON indentation.
        sort_keys: sort the keys of every object.

    Example:
        >>> import json, os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "a.json")
        >>> atomic_write_json(path, {"loss": np.float32(0.5)})
        >>> json.load(open(path))
        {'loss': 0.5}
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=_json_default)
    atomic_write_text(path, text + "\n")


@contextlib.contextmanager
def model_without_optimizer(model):
    """Detach `model.optimizer` for the duration of the block, then put it back.

    Keras saves the state of whatever optimizer is attached to a model inside `model.save` and
    `model.save_weights`. A trainer attaches its optimizer so that Keras callbacks find the
    learning rate; saving the weights alone (or a model for serving) should not drag the
    optimizer's slots along.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.optimizer = keras.optimizers.SGD()
        >>> with model_without_optimizer(model):
        ...     model.optimizer is None
        True
        >>> model.optimizer is not None
        True
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        yield model
        return
    model.optimizer = None
    try:
        yield model
    finally:
        model.optimizer = optimizer


def atomic_save_model(model, path, include_optimizer=True):
    """Save a Keras model to a `.keras` file atomically.

    Args:
        model: a `keras.Model`.
        path: the destination, ending in `.keras`.
        include_optimizer: also store the attached optimizer's state (Keras' default). Pass
            False for a model meant for inference.

    Raises:
        ConfigError: `path` does not end in `.keras`.

    Example:
        >>> import os, tempfile, keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> path = os.path.join(tempfile.mkdtemp(), "best.keras")
        >>> atomic_save_model(model, path)
        >>> keras.saving.load_model(path).count_params()
        3
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ConfigError(f"model path must end in '.keras', got {path!r}")
    context = contextlib.nullcontext() if include_optimizer else model_without_optimizer(model)
    with atomic_path(path) as tmp, context:
        model.save(tmp)
    logger.debug("saved model to %s", path)
