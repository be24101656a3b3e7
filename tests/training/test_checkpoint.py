"""Checkpoints: exact round trips, pruning, interrupted saves, mismatches, and exact resumes."""
import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.errors import DataError
from tfseg.training import CheckpointManager, EpochCheckpoint, Trainer, default_callbacks, set_seed


def make_model(seed, filters=1, name="seg"):
    set_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    outputs = keras.layers.Conv2D(filters, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def toy_data(n=8, batch=2, seed=0):
    """Deterministic (no shuffling) images with a bright square and its mask."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, (n, 8, 8, 1)).astype("float32")
    y = np.zeros((n, 8, 8, 1), "float32")
    for i in range(n):
        r, c = rng.integers(0, 5, 2)
        y[i, r:r + 3, c:c + 3] = 1.0
    x += 2.0 * y
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.01),
    "sgd_momentum": lambda: keras.optimizers.SGD(1e-2, momentum=0.9),
    "adam_schedule": lambda: keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=2, decay_rate=0.5)),
}


def trained(optimizer_name, seed=1, epochs=1):
    model = make_model(seed)
    optimizer = OPTIMIZERS[optimizer_name]()
    Trainer(model, keras.losses.BinaryCrossentropy(), optimizer).fit(toy_data(), epochs=epochs, verbose=0)
    return model, optimizer


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
def test_round_trip_restores_weights_and_optimizer_exactly(tmp_path, optimizer_name):
    model, optimizer = trained(optimizer_name)
    manager = CheckpointManager(tmp_path)
    path = manager.save(3, model, optimizer, state={"seed": 1, "history": {"loss": [0.5, 0.4, 0.3]}})
    assert path == str(tmp_path / "ckpt-0003")
    assert sorted(os.listdir(path)) == ["model.weights.h5", "model_state.npz", "optimizer.npz", "state.json"]

    fresh = make_model(seed=99)
    fresh_optimizer = OPTIMIZERS[optimizer_name]()
    assert not np.allclose(fresh.get_weights()[0], model.get_weights()[0])
    state = manager.restore(fresh, fresh_optimizer)
    assert state["epoch"] == 3 and state["seed"] == 1 and state["history"]["loss"] == [0.5, 0.4, 0.3]
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(fresh_optimizer.variables) == len(optimizer.variables)
    for a, b in zip(optimizer.variables, fresh_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(fresh_optimizer.iterations.numpy()) == int(optimizer.iterations.numpy()) == 4
    assert float(fresh_optimizer.learning_rate) == float(optimizer.learning_rate)


def test_save_builds_an_unbuilt_optimizer_and_restore_into_unbuilt(tmp_path):
    model = make_model(1)
    manager = CheckpointManager(tmp_path)
    manager.save(1, model, keras.optimizers.Adam())
    optimizer = keras.optimizers.Adam()
    manager.restore(make_model(2), optimizer)
    assert optimizer.built and int(optimizer.iterations.numpy()) == 0


def test_attached_optimizer_is_not_saved_with_the_weights(tmp_path):
    import h5py

    model, optimizer = trained("adam")
    model.optimizer = optimizer
    path = CheckpointManager(tmp_path).save(1, model, optimizer)
    with h5py.File(os.path.join(path, "model.weights.h5")) as handle:
        assert "optimizer" not in handle
    assert model.optimizer is optimizer
    fresh = make_model(5)
    fresh.optimizer = keras.optimizers.Adam(1e-2)
    CheckpointManager(tmp_path).restore(fresh, fresh.optimizer)
    np.testing.assert_array_equal(fresh.optimizer.variables[2].numpy(), optimizer.variables[2].numpy())


def test_max_to_keep_prunes_oldest_and_latest_pointer(tmp_path):
    model, optimizer = make_model(1), keras.optimizers.SGD()
    manager = CheckpointManager(tmp_path, max_to_keep=2)
    for epoch in range(1, 6):
        manager.save(epoch, model, optimizer)
    assert [e for e, _ in manager.checkpoints()] == [4, 5]
    assert manager.latest() == str(tmp_path / "ckpt-0005")
    assert json.loads((tmp_path / "latest").read_text()) == {"checkpoint": "ckpt-0005", "epoch": 5}
    assert sorted(os.listdir(tmp_path)) == ["ckpt-0004", "ckpt-0005", "latest"]


def test_half_written_checkpoint_is_ignored(tmp_path):
    model, optimizer = make_model(1), keras.optimizers.SGD()
    manager = CheckpointManager(tmp_path)
    manager.save(2, model, optimizer)
    broken = tmp_path / "ckpt-0003"
    broken.mkdir()
    model.save_weights(str(broken / "model.weights.h5"))  # interrupted before state.json
    assert manager.latest() == str(tmp_path / "ckpt-0002")
    (tmp_path / "latest").write_text('{"checkpoint": "ckpt-0003", "epoch": 3}')  # pointer to it anyway
    assert manager.latest() == str(tmp_path / "ckpt-0002")
    (tmp_path / "latest").write_text("{garbage")
    assert manager.latest() == str(tmp_path / "ckpt-0002")
    assert [e for e, _ in manager.checkpoints()] == [2]
    with pytest.raises(DataError, match="state.json is missing"):
        manager.restore(model, optimizer, path=broken)


def test_leftovers_of_an_interrupted_save_are_cleaned_up(tmp_path):
    leftover = tmp_path / ".tmp-999999-0123abcd-ckpt-0002"
    (leftover / "inner").mkdir(parents=True)
    (tmp_path / ".tmp-999999-0123abcd-latest").write_text("{")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("kept")
    CheckpointManager(tmp_path).save(1, make_model(1), keras.optimizers.SGD())
    assert sorted(os.listdir(tmp_path)) == ["ckpt-0001", "latest", "notes.txt"]


def test_new_run_replaces_checkpoints_of_an_older_longer_run(tmp_path):
    model, optimizer = make_model(1), keras.optimizers.SGD()
    manager = CheckpointManager(tmp_path, max_to_keep=5)
    for epoch in (1, 2, 3):
        manager.save(epoch, model, optimizer, state={"run": "old"})
    manager.save(1, model, optimizer, state={"run": "new"})
    assert [e for e, _ in manager.checkpoints()] == [1]
    assert manager.read_state()["run"] == "new"


def test_no_checkpoint_is_a_data_error(tmp_path):
    manager = CheckpointManager(tmp_path / "empty")
    assert manager.latest() is None
    with pytest.raises(DataError, match="no complete checkpoint"):
        manager.restore(make_model(1), keras.optimizers.SGD())


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_model_shape_mismatch_is_a_data_error(tmp_path):
    manager = CheckpointManager(tmp_path)
    path = manager.save(1, make_model(1, filters=1), keras.optimizers.SGD())
    with pytest.raises(DataError) as info:
        manager.restore(make_model(1, filters=3), keras.optimizers.SGD())
    assert str(info.value) == (f"{path}/model.weights.h5: weights do not fit model 'seg': variable 'head/kernel' "
                               "has shape (1, 1, 4, 3) but the checkpoint holds (1, 1, 4, 1)")


def test_optimizer_mismatch_is_a_data_error(tmp_path):
    manager = CheckpointManager(tmp_path)
    model = make_model(1)
    path = manager.save(1, model, keras.optimizers.Adam())
    with pytest.raises(DataError, match="optimizer SGD has 2 variables but the checkpoint has 10") as info:
        manager.restore(make_model(1), keras.optimizers.SGD())
    assert path in str(info.value)


def test_optimizer_slot_shape_mismatch_names_the_variable(tmp_path):
    manager = CheckpointManager(tmp_path)
    path = manager.save(1, make_model(1), keras.optimizers.Adam())
    data = dict(np.load(os.path.join(path, "optimizer.npz")))
    data["v00002"] = np.zeros((5, 5), "float32")
    np.savez(os.path.join(path, "optimizer.npz"), **data)
    with pytest.raises(DataError, match=r"optimizer variable '.*conv1_kernel_momentum' has shape \(3, 3, 1, 4\)"):
        manager.restore(make_model(1), keras.optimizers.Adam())


def test_round_trip_under_mirrored_strategy(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = make_model(1)
        optimizer = keras.optimizers.Adam(1e-2)
    Trainer(model, keras.losses.BinaryCrossentropy(), optimizer, strategy=strategy).fit(toy_data(), 1, verbose=0)
    CheckpointManager(tmp_path).save(1, model, optimizer)
    with strategy.scope():
        fresh, fresh_optimizer = make_model(2), keras.optimizers.Adam(1e-2)
    CheckpointManager(tmp_path).restore(fresh, fresh_optimizer)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(fresh_optimizer.iterations.numpy()) == 4


# ----------------------------------------------------------------------------- resume
class StopAt(keras.callbacks.Callback):
    """Simulates a crash at the start of an epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"killed at epoch {epoch}")


def run(output_dir, optimizer_factory, epochs=4, crash_at=None, resume=False, **callback_options):
    model = make_model(7)
    optimizer = optimizer_factory()
    callbacks = default_callbacks(output_dir, monitor="val_loss", mode="min", **callback_options)
    if crash_at is not None:
        callbacks.insert(0, StopAt(crash_at))
    trainer = Trainer(model, keras.losses.BinaryCrossentropy(), optimizer, metrics=["binary_accuracy"])
    history = trainer.fit(toy_data(), epochs=epochs, validation_data=toy_data(4, seed=1), callbacks=callbacks,
                          verbose=0, checkpoint_dir=os.path.join(output_dir, "checkpoints"), resume=resume)
    return model, optimizer, history


@pytest.mark.parametrize("kind", ["schedule", "reduce_lr"])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, kind):
    if kind == "schedule":
        factory = OPTIMIZERS["adam_schedule"]
        options = {}
    else:  # a float learning rate changed by ReduceLROnPlateau (patience counters are resumed too)
        factory = OPTIMIZERS["adam"]
        options = {"reduce_lr": {"monitor": "loss", "factor": 0.5, "patience": 1, "min_delta": 10.0}}
    straight, straight_optimizer, straight_history = run(tmp_path / "straight", factory, **options)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crashed", factory, crash_at=2, **options)
    manager = CheckpointManager(tmp_path / "crashed" / "checkpoints")
    assert [e for e, _ in manager.checkpoints()] == [1, 2]
    resumed, resumed_optimizer, resumed_history = run(tmp_path / "crashed", factory, resume=True, **options)

    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(resumed_optimizer.iterations.numpy()) == int(straight_optimizer.iterations.numpy()) == 16
    assert resumed_history.keys() == straight_history.keys()
    for key in straight_history:
        np.testing.assert_allclose(resumed_history[key], straight_history[key], rtol=1e-5, err_msg=key)
    if kind == "reduce_lr":
        assert straight_history["learning_rate"] == pytest.approx([1e-2, 1e-2, 5e-3, 2.5e-3])
    with open(tmp_path / "crashed" / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert [e for e, _ in manager.checkpoints()] == [2, 3, 4]
    assert manager.read_state()["history"]["loss"] == pytest.approx(straight_history["loss"])
    best = keras.saving.load_model(tmp_path / "crashed" / "best.keras")
    assert best.count_params() == resumed.count_params()


def test_resume_without_checkpoint_starts_fresh_and_finished_run_does_nothing(tmp_path):
    model = make_model(3)
    trainer = Trainer(model, keras.losses.BinaryCrossentropy(), keras.optimizers.Adam(1e-2))
    history = trainer.fit(toy_data(), epochs=2, verbose=0, checkpoint_dir=tmp_path, resume=True)
    assert len(history["loss"]) == 2
    assert [e for e, _ in CheckpointManager(tmp_path).checkpoints()] == [1, 2]
    weights = model.get_weights()
    again = trainer.fit(toy_data(), epochs=2, verbose=0, checkpoint_dir=tmp_path, resume=True)
    assert again["loss"] == history["loss"]
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_epoch_checkpoint_saves_best_model_only_on_improvement(tmp_path):
    class Scripted(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_dice"] = [0.2, 0.5, 0.4][epoch]

    saved = []
    checkpoint = EpochCheckpoint(tmp_path / "ckpts", best_path=tmp_path / "best.keras", monitor="val_dice")
    original = checkpoint.manager.save
    checkpoint.manager.save = lambda *a, **k: saved.append(a[0]) or original(*a, **k)
    model = make_model(1)
    optimizer = keras.optimizers.SGD()
    model.optimizer = optimizer
    checkpoint.set_model(model)
    checkpoint.set_params({"epochs": 3})
    for epoch, dice in enumerate([0.2, 0.5, 0.4]):
        checkpoint.on_epoch_end(epoch, {"loss": 1.0, "val_dice": dice})
        if epoch == 1:
            best_mtime = os.path.getmtime(tmp_path / "best.keras")
    assert checkpoint.best == 0.5
    assert saved == [1, 2, 3]
    assert os.path.getmtime(tmp_path / "best.keras") == best_mtime
    assert CheckpointManager(tmp_path / "ckpts").read_state()["best"] == 0.5
