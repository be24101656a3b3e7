"""Tests of tfseg.utils.quiet (TensorFlow start-up noise) and `tfseg --version`."""
import os
import subprocess
import sys

import pytest

import tfseg
from tfseg.cli import main
from tfseg.utils.quiet import NOISE, drop_noise, quiet_tensorflow, wants_tensorflow_noise

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quiet_sets_levels_unless_asked():
    env = {}
    assert quiet_tensorflow(env) is True
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1", "TFSEG_QUIET_TF": "3"}
    assert quiet_tensorflow(env) is True and not wants_tensorflow_noise(env)   # again: still tfseg's level
    kept = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    assert quiet_tensorflow(kept) is False and kept == {"TF_CPP_MIN_LOG_LEVEL": "0"}
    for value in ("1", "true", "YES"):
        assert wants_tensorflow_noise({"TFSEG_VERBOSE_TF": value})
    assert not wants_tensorflow_noise({"TFSEG_VERBOSE_TF": "0"})
    onednn = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    quiet_tensorflow(onednn)
    assert onednn["TF_ENABLE_ONEDNN_OPTS"] == "0"   # the user's choice of computation is kept


def test_drop_noise_keeps_real_errors():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1796398067.763671   14220 cudart_stub.cc:31] Could not find cuda drivers\n"
            "W0000 00:00:1796398067.763671   14220 gpu_device.cc:2] Cannot dlopen some GPU libraries\n"
            "E0000 00:00:1796398067.763671   14220 real.cc:1] something broke\n"
            "Traceback (most recent call last):\n")
    assert drop_noise(text) == ("E0000 00:00:1796398067.763671   14220 real.cc:1] something broke\n"
                                "Traceback (most recent call last):\n")
    assert not NOISE.match("INFO tfseg: a log line of ours")


@pytest.mark.slow
def test_import_tensorflow_prints_no_startup_noise():
    code = ("from tfseg.utils.quiet import import_tensorflow, quiet_tensorflow\n"
            "quiet_tensorflow()\n"
            "tf = import_tensorflow()\n"
            "print(int(tf.reduce_sum(tf.constant([1, 2]))))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFSEG_VERBOSE_TF", "TFSEG_QUIET_TF")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    noisy = [line for line in done.stderr.splitlines()
             if NOISE.match(line) or "cuInit" in line or "oneDNN custom operations" in line]
    assert noisy == [], done.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"tfseg {tfseg.__version__}"
