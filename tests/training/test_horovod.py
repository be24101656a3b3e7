"""Tests of the Horovod path of tfseg.training.distributed and of `workflow_distribution`.

The two-process tests start `horovodrun --gloo -np 2` (Horovod is an optional extra that only
builds against TensorFlow <= 2.18, so they run in the environment `.ci/horovod.sh` builds and are
skipped elsewhere); the other tests need no Horovod and run everywhere.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.errors import ConfigError
from tfseg.training import Trainer
from tfseg.training import distributed
from tfseg.training.warmup import LearningRateWarmup, WarmupSchedule
from tfseg.training.distributed import (Distribution, equal_shard_steps, shard_batches, strategy_distribution,
                                        workflow_distribution)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import horovod_worker as worker  # noqa: E402  (the shared tiny problem)

RUN_TIMEOUT_S = 300


# ----------------------------------------------------------------- no Horovod needed
@pytest.fixture
def clean_env(monkeypatch):
    for name in ("TF_CONFIG", "HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", *distributed.LAUNCHER_ENV_VARS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class FakeHorovod:
    """The rank/size part of `horovod.tensorflow`, to test the Distribution logic without Horovod."""

    def __init__(self, size, rank):
        self._size, self._rank = size, rank

    def size(self):
        return self._size

    def rank(self):
        return self._rank


def test_workflow_distribution_none(clean_env):
    dist = workflow_distribution("none")
    assert (dist.kind, dist.world_size, dist.rank, dist.is_chief) == ("none", 1, 0, True)
    assert dist.strategy is tf.distribute.get_strategy()
    assert dist.learning_rate(0.003) == 0.003
    assert dist.callbacks() == [] and dist.callbacks(warmup_epochs=5) == []
    data = tf.data.Dataset.range(5).batch(2)
    assert dist.shard(data) is data
    with dist.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    trainer = dist.trainer(model, keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.1))
    assert type(trainer) is Trainer and trainer.strategy is dist.strategy
    with pytest.raises(ConfigError, match="strategy"):
        dist.trainer(model, keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.1), strategy=dist.strategy)
    with dist.chief_first():
        dist.barrier()
    with pytest.raises(ConfigError, match="distribute must be one of"):
        workflow_distribution("tpu")


def test_none_under_a_horovod_launch_means_horovod(clean_env):
    assert distributed.launcher_world_size({"HOROVOD_SIZE": "8"}) == 8
    assert distributed.launcher_world_size({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
    assert distributed.launcher_world_size({"HOROVOD_SIZE": "x"}) == 1
    clean_env.setenv("HOROVOD_SIZE", "1")
    assert workflow_distribution("none").kind == "none"  # one process: nothing to do
    clean_env.setenv("HOROVOD_SIZE", "2")
    clean_env.setitem(sys.modules, "horovod", None)  # import horovod.tensorflow -> ImportError
    clean_env.setitem(sys.modules, "horovod.tensorflow", None)
    with pytest.raises(distributed.TfsegError, match="optional extra"):
        workflow_distribution("none")


def test_strategy_distribution_kinds(clean_env):
    assert strategy_distribution().kind == "none"
    mirrored = strategy_distribution(tf.distribute.MirroredStrategy())
    assert mirrored.kind == "mirrored" and mirrored.world_size >= 1 and mirrored.is_chief
    assert mirrored.learning_rate(0.1) == 0.1  # tf.distribute batches are global: no scaling


def test_horovod_distribution_logic_with_four_ranks():
    dist = Distribution("horovod", tf.distribute.get_strategy(), FakeHorovod(size=4, rank=1))
    assert (dist.world_size, dist.rank, dist.is_chief) == (4, 1, False)
    assert dist.learning_rate(1e-3) == pytest.approx(4e-3)
    [warmup] = dist.callbacks(warmup_epochs=2)
    assert (warmup.world_size, warmup.warmup_epochs) == (4, 2)
    assert dist.callbacks(warmup_epochs=0) == []
    assert [int(v) for v in dist.shard(tf.data.Dataset.range(10))] == [1, 5]  # 10 batches -> 2 per rank
    assert Distribution("horovod", tf.distribute.get_strategy(), FakeHorovod(1, 0)).callbacks() == []


@pytest.mark.parametrize("batches, ranks, steps", [(10, 4, 2), (8, 4, 2), (7, 2, 3), (3, 4, 1), (1, 1, 1), (5, 1, 5)])
def test_equal_shard_steps(batches, ranks, steps):
    assert equal_shard_steps(batches, ranks) == steps


@pytest.mark.parametrize("bad", [(0, 2), (4, 0), (4.0, 2), (True, 2), (4, -1)])
def test_equal_shard_steps_rejects(bad):
    with pytest.raises(ConfigError, match="equal_shard_steps"):
        equal_shard_steps(*bad)


def _shards(dataset, ranks):
    return [[int(v) for v in shard_batches(dataset, ranks, r)] for r in range(ranks)]


def test_shard_batches_equal_counts_and_disjoint():
    assert _shards(tf.data.Dataset.range(7), 2) == [[0, 2, 4], [1, 3, 5]]
    assert _shards(tf.data.Dataset.range(8), 4) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert _shards(tf.data.Dataset.range(3), 4) == [[0], [1], [2], [0]]  # fewer batches than ranks
    unknown = tf.data.Dataset.range(20).filter(lambda v: v % 2 == 0)  # 10 batches of unknown length
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert _shards(unknown, 3) == [[0, 6, 12], [2, 8, 14], [4, 10, 16]]
    for shard in (shard_batches(tf.data.Dataset.range(9), 2, r) for r in range(2)):
        assert int(shard.cardinality()) == 4  # known, so the trainer knows its steps per epoch
    forever = shard_batches(tf.data.Dataset.range(3).repeat(), 2, 1)
    assert [int(v) for v in forever.take(4)] == [1, 0, 2, 1]
    data = tf.data.Dataset.range(4)
    assert shard_batches(data, 1, 0) is data
    with pytest.raises(ConfigError, match="empty"):
        shard_batches(tf.data.Dataset.range(0), 2, 0)
    with pytest.raises(ConfigError, match="shard_for_worker"):
        shard_batches(data, 2, 2)


class RecordRate(keras.callbacks.Callback):
    """Records the learning rate each step runs with."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.rates.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))


def _fit(learning_rate, epochs, warmup, checkpoint_dir=None, resume=False):
    x = np.linspace(-1, 1, 32, dtype="float32").reshape(16, 2)
    data = tf.data.Dataset.from_tensor_slices((x, x[:, :1] * 0.5)).batch(4)  # 4 steps per epoch
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones")])
    optimizer = keras.optimizers.SGD(learning_rate)
    record = RecordRate()
    trainer = Trainer(model, keras.losses.MeanSquaredError(), optimizer)
    history = trainer.fit(data, epochs=epochs, callbacks=[warmup, record], verbose=0, checkpoint_dir=checkpoint_dir,
                          resume=resume)
    return record.rates, history, optimizer


def _warmup(world_size=4, epochs=1):
    callback_class = LearningRateWarmup
    return callback_class(world_size, epochs)


def test_warmup_ramps_a_float_learning_rate():
    rates, history, optimizer = _fit(0.4, epochs=2, warmup=_warmup(world_size=4, epochs=1))
    expected = [0.4 * (0.25 + 0.75 * t / 4) for t in range(4)] + [0.4] * 4
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert history["learning_rate"][-1] == pytest.approx(0.4)


def test_warmup_resumes_where_it_stopped(tmp_path):
    full, _, _ = _fit(0.4, epochs=3, warmup=_warmup(world_size=2, epochs=2))
    first, _, _ = _fit(0.4, epochs=1, warmup=_warmup(world_size=2, epochs=2), checkpoint_dir=tmp_path / "c")
    # the checkpoint holds the learning-rate variable mid-ramp; the callback must not take it as the target
    rest, history, _ = _fit(0.4, epochs=3, warmup=_warmup(world_size=2, epochs=2), checkpoint_dir=tmp_path / "c",
                            resume=True)
    np.testing.assert_allclose(first + rest, full, rtol=1e-6)
    assert full[0] == pytest.approx(0.2) and full[-1] == pytest.approx(0.4)
    assert len(history["loss"]) == 3


def test_warmup_leaves_a_reduced_rate_alone_after_the_ramp():
    warmup = _warmup(world_size=2, epochs=1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.4)
    Trainer(model, keras.losses.MeanSquaredError(), optimizer)  # attaches the optimizer to the model
    optimizer.build(model.trainable_variables)
    warmup.set_model(model)
    optimizer.iterations.assign(10)  # past the ramp, as after a resume
    optimizer.learning_rate = 0.05  # e.g. lowered by ReduceLROnPlateau before the checkpoint
    warmup.set_params({"steps": 4})
    warmup.on_train_begin()
    warmup.set_resume_state({"target": 0.4})
    warmup.on_train_batch_begin(0)
    warmup.on_train_batch_end(0)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)


def test_warmup_wraps_a_schedule_and_unwraps_it():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.4, decay_steps=4, decay_rate=0.5)
    rates, _, optimizer = _fit(schedule, epochs=2, warmup=_warmup(world_size=2, epochs=1))
    expected = [float(schedule(t)) * (0.5 + 0.5 * min(1.0, t / 4)) for t in range(8)]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    assert optimizer._learning_rate is schedule  # unwrapped at the end of training
    schedule_class = WarmupSchedule
    wrapped = schedule_class(schedule, 4, 2)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(wrapped))
    assert float(again(2)) == pytest.approx(float(wrapped(2)))


def test_warmup_rejects_bad_arguments():
    callback_class = LearningRateWarmup
    with pytest.raises(ConfigError, match="world_size"):
        callback_class(0)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        callback_class(2, -1)


# ----------------------------------------------------------------- two Horovod processes
def _horovodrun(mode, out_dir):
    """Run horovod_worker.py on 2 local ranks (Gloo); return (ok, output)."""
    pytest.importorskip("horovod.tensorflow")
    launcher = Path(sys.executable).with_name("horovodrun")
    launcher = str(launcher) if launcher.exists() else shutil.which("horovodrun")
    if launcher is None:
        pytest.skip("horovodrun is not on the PATH")
    env = dict(os.environ)
    for name in ("TF_CONFIG", *distributed.LAUNCHER_ENV_VARS):
        env.pop(name, None)
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    command = [launcher, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable,
               str(HERE / "horovod_worker.py"), mode, str(out_dir)]
    try:
        result = subprocess.run(command, env=env, cwd=str(ROOT), capture_output=True, text=True,
                                timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        return False, f"timed out after {RUN_TIMEOUT_S} s\n{(error.stdout or '')[-3000:]}"
    return result.returncode == 0, (result.stdout + result.stderr)[-6000:]


@pytest.mark.slow
def test_two_ranks_one_step_equals_single_process_step(tmp_path):
    ok, output = _horovodrun("step", tmp_path)
    assert ok, f"horovodrun failed:\n{output}"
    w0, w1 = (np.load(tmp_path / f"weights{r}.npy") for r in range(2))
    np.testing.assert_array_equal(w0, w1)  # (a) identical weights on both ranks
    info = [json.loads((tmp_path / f"step{r}.json").read_text()) for r in range(2)]
    assert [i["is_chief"] for i in info] == [True, False]
    assert {(i["kind"], i["world_size"], i["type"]) for i in info} == {("horovod", 2, "HorovodTrainer")}

    # the single-process step on the concatenated batch, from rank 0's initial weights
    x, y = worker.problem()
    model = worker.model(seed=7)
    initial = worker.flat(model.get_weights())
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x, training=True))
    gradient = worker.flat(tape.gradient(loss, model.trainable_variables))
    reference = initial - worker.LEARNING_RATE * gradient
    assert not np.allclose(reference, initial), "the step should change the weights"
    np.testing.assert_allclose(w0, reference, atol=1e-5, rtol=0)
    # (b) the averaged gradient (5 + 3 examples, weighted by batch size) is that of the whole batch
    np.testing.assert_allclose((initial - w0) / worker.LEARNING_RATE, gradient, atol=1e-5, rtol=0)
    # the epoch logs are global: both ranks log the loss of the whole batch
    for i in info:
        assert i["loss"] == pytest.approx(float(loss), rel=1e-5)


@pytest.mark.slow
def test_two_ranks_sunnybrook_workflow_only_rank0_writes(tmp_path):
    ok, output = _horovodrun("workflow", tmp_path)
    assert ok, f"horovodrun failed:\n{output}"
    results = [json.loads((tmp_path / f"workflow{r}.json").read_text()) for r in range(2)]
    assert [r["kind"] for r in results] == ["horovod", "horovod"]
    assert [r["is_chief"] for r in results] == [True, False]
    assert results[1]["metrics"] is None and results[0]["metrics"]["epochs"] == 2
    assert not (tmp_path / "out1").exists(), sorted(p.name for p in (tmp_path / "out1").rglob("*"))
    out0 = tmp_path / "out0"
    for name in ("model.keras", "metrics.json", "config.json", "history.csv", "best.keras", "saved_model", "logs"):
        assert (out0 / name).exists(), name
    assert list((out0 / "checkpoints").iterdir())
    with open(out0 / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # one writer: no duplicated rows
    assert json.loads((out0 / "metrics.json").read_text())["epochs"] == 2
