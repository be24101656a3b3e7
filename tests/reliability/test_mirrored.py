"""Training under a real 2-replica MirroredStrategy (two logical CPUs), with checkpoints and resume.

The optimizer is created outside the strategy's scope, as the workflows create it; this used to
fail with "Mixing different tf.distribute.Strategy objects" when the optimizer was built.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_replicas_match_one_replica_with_the_same_global_batch():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("mirrored_worker.py"))], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["iterations"] == 12  # 3 epochs of 4 steps, the third after a resume
    assert len(report["mirrored"]) == 3
    np.testing.assert_allclose(report["mirrored"], report["single"], rtol=1e-5)
    assert report["max_weight_difference"] < 1e-5


def test_adopt_optimizer_refuses_an_optimizer_built_elsewhere():
    import keras
    import tensorflow as tf

    from tfseg.errors import ConfigError
    from tfseg.training.checkpoint import adopt_optimizer

    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    optimizer._distribution_strategy = object()  # as if built under another strategy
    with pytest.raises(ConfigError, match="built outside the model's distribution strategy"):
        adopt_optimizer(optimizer, tf.distribute.get_strategy())
