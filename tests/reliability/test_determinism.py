"""Same-seed runs are bit-identical on CPU, and a run killed with SIGKILL then resumed ends the same.

Each run is a separate Python process (`tiny_run.py`): a tiny 3D model trained by tfseg's
`Trainer` on crops from tfseg's BraTS pipeline (shuffled, randomly cropped, flipped, intensity
augmented, with dropout), with `enable_determinism(seed)`.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfseg.datasets.synthetic import write_brats

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("tiny_run.py")

pytestmark = pytest.mark.slow


def _command(data, out, *extra):
    return [sys.executable, str(SCRIPT), str(data), str(out), "--deterministic", "--epochs", "3", *extra]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def _weights(out):
    with np.load(os.path.join(out, "weights.npz")) as data:
        return [data[key] for key in sorted(data.files)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two uninterrupted same-seed runs, started at once."""
    root = tmp_path_factory.mktemp("determinism")
    data = write_brats(root / "data", num_cases=4, shape=(16, 16, 16), seed=2).root
    outs = [root / "a", root / "b"]
    processes = [subprocess.Popen(_command(data, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for out in outs]
    for process in processes:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output.decode()[-3000:]
    return data, outs


def test_same_seed_runs_are_bit_identical(runs):
    _, (a, b) = runs
    first, second = _weights(a), _weights(b)
    assert len(first) == 4
    for x, y in zip(first, second):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()


def test_killed_then_resumed_run_matches_the_uninterrupted_one(runs, tmp_path):
    data, (reference, _) = runs
    out = tmp_path / "killed"
    # SIGKILL at the end of epoch 2: history.csv has its row, the checkpoint of epoch 2 is not written
    killed = subprocess.run(_command(data, out, "--kill-after-csv", "2"), env=_env(), capture_output=True,
                            timeout=600)
    assert killed.returncode == -9, killed.stdout.decode()[-3000:] + killed.stderr.decode()[-3000:]
    assert len((out / "history.csv").read_text().splitlines()) == 3  # header + epochs 0 and 1
    assert sorted(os.listdir(out / "checkpoints")) == ["ckpt-0001", "latest"]

    resumed = subprocess.run(_command(data, out, "--resume"), env=_env(), capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    # every epoch once, with the values of the uninterrupted run
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()
    for x, y in zip(_weights(out), _weights(reference)):
        assert np.array_equal(x, y)
