"""Resuming after a crash: the newest complete checkpoint, no repeated history rows, no leftovers,
a clear warning without a checkpoint, and a refusal to resume another config's run."""
import json
import logging
import os
import time

import numpy as np
import pytest

from tfseg.errors import ConfigError
from tfseg.training.checkpoint import CheckpointManager
from tfseg.utils.atomic import clean_stale_temporaries


def _setup():
    import keras
    import tensorflow as tf

    from tfseg.training import Trainer

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    x = np.arange(24, dtype="float32").reshape(8, 3) / 24
    data = tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1, keepdims=True))).batch(4)
    return Trainer(model, keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.1)), data


def _fit(output_dir, epochs, resume=False, fingerprint=None):
    from tfseg.training import default_callbacks

    trainer, data = _setup()
    callbacks = default_callbacks(output_dir, monitor="loss", mode="min", tensorboard=False)
    return trainer.fit(data, epochs=epochs, callbacks=callbacks, verbose=0, resume=resume, fingerprint=fingerprint)


def test_newest_complete_checkpoint_wins_over_a_stale_pointer(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    manager = CheckpointManager(tmp_path)
    manager.save(1, model, keras.optimizers.SGD(0.1))
    manager.save(2, model, keras.optimizers.SGD(0.1))
    # a kill between the rename of ckpt-0002 and the replacement of the pointer
    (tmp_path / "latest").write_text(json.dumps({"checkpoint": "ckpt-0001", "epoch": 1}))
    assert manager.latest() == str(tmp_path / "ckpt-0002")
    os.makedirs(tmp_path / "ckpt-0003")  # renamed in without state.json: never a checkpoint
    assert manager.latest() == str(tmp_path / "ckpt-0002")


def test_history_csv_is_rewritten_from_the_checkpoint(tmp_path):
    _fit(tmp_path, 2)
    reference = (tmp_path / "history.csv").read_text().splitlines()
    # as after a kill between the CSV row of epoch 3 and its checkpoint
    with open(tmp_path / "history.csv", "a") as handle:
        handle.write("2,0.1,0.5,NA,NA\n")
    _fit(tmp_path, 3, resume=True)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[:3] == reference
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2"]


def test_a_fresh_run_does_not_append_to_an_old_history(tmp_path):
    _fit(tmp_path, 2)
    _fit(tmp_path, 1)
    assert [line.split(",")[0] for line in (tmp_path / "history.csv").read_text().splitlines()[1:]] == ["0"]


def test_stale_temporaries_are_cleaned_on_the_next_start(tmp_path):
    dead = 999999999  # above any pid_max: no such process
    leftovers = [tmp_path / f".tmp-{dead}-0a1b2c3d-history.csv", tmp_path / f".tmp-export-{dead}-k2j3h4"]
    leftovers[0].write_text("epoch\n")
    os.makedirs(leftovers[1] / "variables")
    os.makedirs(tmp_path / "checkpoints" / f".tmp-{dead}-0a1b2c3d-ckpt-0003")
    legacy = tmp_path / ".tmp-export-x8y7z6"  # no process id: stale after an hour
    os.makedirs(legacy)
    old = time.time() - 7200
    os.utime(legacy, (old, old))
    alive = tmp_path / f".tmp-{os.getpid()}-0a1b2c3d-best.keras"  # a write in progress: kept
    alive.write_text("")
    _fit(tmp_path, 1)
    names = sorted(os.listdir(tmp_path))
    assert not any(name.startswith(".tmp-") and name != alive.name for name in names), names
    assert alive.exists()
    assert not any(n.startswith(".tmp-") for n in os.listdir(tmp_path / "checkpoints"))
    assert clean_stale_temporaries(tmp_path / "missing") == []


def test_resume_without_a_checkpoint_warns(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tfseg.training.trainer")
    history = _fit(tmp_path, 1, resume=True)
    assert len(history["loss"]) == 1
    assert any("resume: no checkpoint in" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_resume_refuses_another_configs_checkpoint(tmp_path):
    _fit(tmp_path, 1, fingerprint="aaaa1111")
    state = json.loads((tmp_path / "checkpoints" / "ckpt-0001" / "state.json").read_text())
    assert state["config_fingerprint"] == "aaaa1111"
    with pytest.raises(ConfigError, match=r"was written by a run with another config \(fingerprint aaaa1111, this "
                                          r"run bbbb2222\)"):
        _fit(tmp_path, 2, resume=True, fingerprint="bbbb2222")
    assert len(_fit(tmp_path, 2, resume=True, fingerprint="aaaa1111")["loss"]) == 2
