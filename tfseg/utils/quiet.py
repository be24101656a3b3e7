"""Silence TensorFlow's start-up noise unless the user asks for it.

Importing TensorFlow prints lines that say nothing about the user's run: the C++ runtime's
"oneDNN custom operations are on", "Unable to register cuDNN factory", "failed call to cuInit"
on a machine without a GPU, and absl's "All log messages before absl::InitializeLog()". The
C++ runtime reads its log level from the environment when it loads, so the level has to be set
*before* `import tensorflow`: the `tfseg` command and the recipes call `quiet_tensorflow()` first.

Two lines come before TensorFlow's own log level applies (absl's "All log messages before
absl::InitializeLog()" and "Could not find cuda drivers" from the CUDA stub, written while the
libraries load): `import_tensorflow()` imports TensorFlow with the process's standard error
captured and writes back every captured line except those INFO/WARNING start-up lines.

The user keeps control: with `TFSEG_VERBOSE_TF=1`, or with `TF_CPP_MIN_LOG_LEVEL` already set
(to any value), nothing is changed and nothing is captured.

Example:
    >>> env = {}
    >>> quiet_tensorflow(env)
    True
    >>> env["TF_CPP_MIN_LOG_LEVEL"], env["TF_ENABLE_ONEDNN_OPTS"]
    ('3', '1')
    >>> quiet_tensorflow(env)  # a second call: the level is tfseg's own, not the user's
    True
    >>> quiet_tensorflow({"TFSEG_VERBOSE_TF": "1"})
    False
"""
import logging
import os
import re
import sys
import tempfile

#: Set to 1 (or true/yes/on) to see TensorFlow's start-up messages.
VERBOSE_VARIABLE = "TFSEG_VERBOSE_TF"

#: TF_CPP_MIN_LOG_LEVEL when quiet: 3 also drops the runtime's ERROR lines such as "failed call to
#: cuInit" on a machine without a GPU (real failures still raise Python exceptions).
QUIET_LEVEL = "3"

#: Start-up lines dropped by `import_tensorflow`: absl's pre-initialisation notice, and INFO or
#: WARNING lines in the C++ runtime's format (`I0000 00:00:... file.cc:31] ...`).
NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} \d\d:\d\d:\d\d|"
                   r"To enable the following instructions: )")

#: Set by `quiet_tensorflow` beside the log level, so a later call (or a child process) knows the
#: level is tfseg's choice, not the user's.
MARKER_VARIABLE = "TFSEG_QUIET_TF"

_TRUE = ("1", "true", "yes", "on")


def wants_tensorflow_noise(environ=None):
    """True when the user asked for TensorFlow's messages (`TFSEG_VERBOSE_TF`) or set their level.

    Example:
        >>> wants_tensorflow_noise({"TF_CPP_MIN_LOG_LEVEL": "0"}), wants_tensorflow_noise({})
        (True, False)
    """
    environ = os.environ if environ is None else environ
    if environ.get(VERBOSE_VARIABLE, "").strip().lower() in _TRUE:
        return True
    return "TF_CPP_MIN_LOG_LEVEL" in environ and environ.get(MARKER_VARIABLE) != QUIET_LEVEL


def quiet_tensorflow(environ=None):
    """Set the environment and loggers so importing TensorFlow prints no start-up noise.

    Call it before `import tensorflow` (the C++ log level is read once, when the runtime loads);
    later calls still quiet the Python-side loggers (absl, `tensorflow`). Leaves everything as
    it is when `wants_tensorflow_noise(environ)`.

    Sets `TF_CPP_MIN_LOG_LEVEL=3` (`QUIET_LEVEL`) and `TF_ENABLE_ONEDNN_OPTS` to its
    default value `1` unless already set (an explicit value silences the "oneDNN custom
    operations are on" notice without changing the computation), and the absl and `tensorflow`
    Python loggers to ERROR.

    Args:
        environ: the environment mapping to change; default `os.environ`.

    Returns:
        True when it quieted TensorFlow, False when the user asked for its messages.
    """
    environ = os.environ if environ is None else environ
    if wants_tensorflow_noise(environ):
        return False
    environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL
    environ[MARKER_VARIABLE] = QUIET_LEVEL
    environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if environ is os.environ:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
    return True


def drop_noise(text):
    """The lines of `text` that are not TensorFlow start-up noise (`NOISE`), joined again.

    Example:
        >>> drop_noise("I0000 00:00:17.3 1 cudart_stub.cc:31] Could not find cuda drivers\\nreal problem\\n")
        'real problem\\n'
    """
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


def import_tensorflow():
    """Import TensorFlow without its start-up noise (unless the user asked for it) and return it.

    Calls `quiet_tensorflow()`, then imports `tensorflow` with file descriptor 2 captured, and
    writes the captured lines back to standard error except the start-up noise (`drop_noise`).
    When TensorFlow is already imported, or the user asked for its messages, it is a plain import.

    Returns:
        The `tensorflow` module.
    """
    if not quiet_tensorflow() or "tensorflow" in sys.modules:
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = drop_noise(captured.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
    return tensorflow
