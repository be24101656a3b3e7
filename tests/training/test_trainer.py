"""The custom training loop: learning, exact steps, strategies, callbacks, NaN handling, inference."""
import csv
import glob
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from tfseg.errors import ConfigError
from tfseg.training import NonFiniteLossError, Trainer, default_callbacks, set_seed


def make_model(seed=0, l2=None):
    """One 3x3 convolution with a sigmoid: enough to segment a bright square."""
    set_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    regularizer = keras.regularizers.L2(l2) if l2 else None
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", kernel_regularizer=regularizer,
                                  name="mask")(inputs)
    return keras.Model(inputs, outputs)


def arrays(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, (n, 8, 8, 1)).astype("float32")
    y = np.zeros((n, 8, 8, 1), "float32")
    for i in range(n):
        r, c = rng.integers(0, 5, 2)
        y[i, r:r + 3, c:c + 3] = 1.0
    return x + 2.0 * y, y


def dataset(n=8, batch=4, seed=0):
    return tf.data.Dataset.from_tensor_slices(arrays(n, seed)).batch(batch)


def bce():
    return keras.losses.BinaryCrossentropy()


def test_training_reduces_the_loss():
    trainer = Trainer(make_model(), bce(), keras.optimizers.Adam(0.05),
                      metrics=[keras.metrics.BinaryAccuracy(name="acc")])
    before = trainer.evaluate(dataset(16))
    history = trainer.fit(dataset(16), epochs=15, verbose=0)
    after = trainer.evaluate(dataset(16))
    assert after["loss"] < 0.5 * before["loss"]
    assert after["acc"] > 0.95 > before["acc"]
    assert history["loss"][-1] < history["loss"][0]
    assert len(history["loss"]) == 15


@pytest.mark.parametrize("with_sample_weight", [False, True])
def test_one_step_matches_a_hand_written_gradient_tape_step(with_sample_weight):
    x, y = arrays(4)
    weights = np.array([1.0, 0.5, 2.0, 0.0], "float32").reshape(4, 1, 1)  # per image, broadcast over pixels
    model, reference = make_model(1, l2=0.01), make_model(2, l2=0.01)
    reference.set_weights(model.get_weights())
    loss = bce()

    data = (x, y, weights) if with_sample_weight else (x, y)
    Trainer(model, loss, keras.optimizers.Adam(0.1)).fit(
        tf.data.Dataset.from_tensor_slices(data).batch(4), epochs=1, verbose=0)

    optimizer = keras.optimizers.Adam(0.1)
    with tf.GradientTape() as tape:
        pred = reference(x, training=True)
        value = loss(y, pred, sample_weight=weights) if with_sample_weight else loss(y, pred)
        value = value + tf.add_n(reference.losses)
    grads = tape.gradient(value, reference.trainable_variables)
    optimizer.apply_gradients(zip(grads, reference.trainable_variables))

    assert not np.allclose(model.get_weights()[0], make_model(1).get_weights()[0])
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_logged_loss_is_the_sample_mean_over_the_epoch():
    model = make_model(3)
    trainer = Trainer(model, bce(), keras.optimizers.SGD(0.0))  # no update: loss is a fixed function
    history = trainer.fit(dataset(6, batch=4), epochs=1, verbose=0)  # batches of 4 and 2
    x, y = arrays(6)
    expected = float(keras.losses.binary_crossentropy(y, model(x)).numpy().mean())
    assert history["loss"][0] == pytest.approx(expected, rel=1e-5)


def train_weights(strategy, epochs=2):
    scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
    with scope:
        model = make_model(4)
        optimizer = keras.optimizers.SGD(0.5, momentum=0.5)  # unlike Adam, sensitive to the gradient's scale
    trainer = Trainer(model, bce(), optimizer, metrics=[keras.metrics.BinaryAccuracy(name="acc")],
                      strategy=strategy)
    history = trainer.fit(dataset(8, batch=3), epochs=epochs, validation_data=dataset(4, seed=1), verbose=0)
    return model.get_weights(), history, trainer


@pytest.mark.parametrize("make_strategy", [
    lambda: tf.distribute.MirroredStrategy(["/cpu:0"]),
    lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
])
def test_single_device_strategies_match_the_default_strategy(make_strategy):
    expected, expected_history, _ = train_weights(None)
    weights, history, trainer = train_weights(make_strategy())
    for a, b in zip(expected, weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in expected_history:
        np.testing.assert_allclose(history[key], expected_history[key], rtol=1e-5, err_msg=key)
    predictions = trainer.predict(dataset(8))
    assert predictions.shape == (8, 8, 8, 1)


TWO_REPLICAS = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np, keras
    sys.path.insert(0, os.path.dirname({test_file!r}))
    from test_trainer import train_weights
    expected, expected_history, _ = train_weights(None)
    weights, history, trainer = train_weights(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    assert trainer.num_replicas == 2
    for a, b in zip(expected, weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for key in expected_history:
        np.testing.assert_allclose(history[key], expected_history[key], rtol=1e-4, err_msg=key)
    assert trainer.predict(tf.data.Dataset.from_tensor_slices(np.zeros((5, 8, 8, 1), "float32")).batch(3)).shape[0] == 5
    print("TWO REPLICAS OK")
""")


def test_two_replica_mirrored_strategy_matches_one_device():
    """Batches of 3 split 2+1 over two CPU replicas must give the single-device result.

    Runs in a fresh process: logical devices can only be configured before TensorFlow starts.
    """
    script = TWO_REPLICAS.format(test_file=os.path.abspath(__file__))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "TWO REPLICAS OK" in result.stdout, result.stderr[-3000:]


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_train_end(self, logs=None):
        self.events.append("train_end")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(f"batch_begin {batch}")

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(f"batch_end {batch} {sorted(logs)}")

    def on_test_begin(self, logs=None):
        self.events.append("test_begin")

    def on_test_batch_begin(self, batch, logs=None):
        self.events.append(f"test_batch_begin {batch}")

    def on_test_batch_end(self, batch, logs=None):
        self.events.append(f"test_batch_end {batch}")

    def on_test_end(self, logs=None):
        self.events.append(f"test_end {sorted(logs)}")


def test_callbacks_are_called_in_order():
    recorder = Recorder()
    trainer = Trainer(make_model(), bce(), keras.optimizers.Adam(0.01), metrics=[keras.metrics.BinaryAccuracy()])
    history = trainer.fit(dataset(8, batch=4), epochs=2, validation_data=dataset(4, batch=4), callbacks=[recorder],
                          verbose=0)
    logs = ["binary_accuracy", "loss"]
    epoch_logs = sorted(logs + ["learning_rate"] + [f"val_{k}" for k in logs])
    expected = ["train_begin"]
    for epoch in range(2):
        expected += [f"epoch_begin {epoch}",
                     "batch_begin 0", f"batch_end 0 {logs}", "batch_begin 1", f"batch_end 1 {logs}",
                     "test_begin", "test_batch_begin 0", "test_batch_end 0", f"test_end {logs}",
                     f"epoch_end {epoch} {epoch_logs}"]
    expected.append("train_end")
    assert recorder.events == expected
    assert sorted(history) == epoch_logs and all(len(v) == 2 for v in history.values())
    assert trainer.model.history.history["loss"] == history["loss"]


def read_scalars(folder):
    scalars = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return scalars


def test_default_callbacks_write_csv_tensorboard_and_best_model(tmp_path):
    callbacks = default_callbacks(tmp_path, monitor="val_acc", mode="max", tensorboard_update_freq=1)
    trainer = Trainer(make_model(), bce(), keras.optimizers.Adam(0.01),
                      metrics=[keras.metrics.BinaryAccuracy(name="acc")])
    history = trainer.fit(dataset(8), epochs=3, validation_data=dataset(4, seed=1), callbacks=callbacks, verbose=0)

    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "acc", "learning_rate", "loss", "val_acc", "val_loss"]
    assert [float(r["loss"]) for r in rows] == pytest.approx(history["loss"])

    train = read_scalars(tmp_path / "logs" / "train")
    validation = read_scalars(tmp_path / "logs" / "validation")
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2]
    assert [v for _, v in train["epoch_loss"]] == pytest.approx(history["loss"])
    assert [v for _, v in validation["epoch_loss"]] == pytest.approx(history["val_loss"])
    assert [v for _, v in train["epoch_learning_rate"]] == pytest.approx([0.01] * 3)
    assert [s for s, _ in train["batch_loss"]] == [1, 2, 3, 4, 5, 6]

    assert [e for e, _ in callbacks[-1].manager.checkpoints()] == [1, 2, 3]
    best = keras.saving.load_model(tmp_path / "best.keras")
    assert best.count_params() == trainer.model.count_params()


def test_early_stopping_stops_training():
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, min_delta=100.0)
    trainer = Trainer(make_model(), bce(), keras.optimizers.Adam(0.01))
    history = trainer.fit(dataset(), epochs=10, validation_data=dataset(4), callbacks=[stopper], verbose=0)
    assert len(history["loss"]) == 2
    assert stopper.stopped_epoch == 1


def test_reduce_lr_on_plateau_changes_the_learning_rate():
    reducer = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=0, min_delta=100.0)
    optimizer = keras.optimizers.Adam(0.01)
    history = Trainer(make_model(), bce(), optimizer).fit(dataset(), epochs=3, callbacks=[reducer], verbose=0)
    assert history["learning_rate"] == pytest.approx([1e-2, 1e-2, 1e-3])
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)


def nan_dataset():
    x, y = arrays(8)
    x[4] = np.nan  # first sample of the second batch
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


def test_non_finite_loss_raises_naming_epoch_and_step_and_keeps_the_weights():
    model = make_model(5)
    trainer = Trainer(model, bce(), keras.optimizers.Adam(0.01))
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 2"):
        trainer.fit(nan_dataset(), epochs=2, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert int(trainer.optimizer.iterations.numpy()) == 1


def test_skip_batch_leaves_the_weights_and_batchnorm_statistics_untouched():
    set_seed(6)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.BatchNormalization(name="bn")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x))
    trainer = Trainer(model, bce(), keras.optimizers.Adam(0.01), on_nan="skip_batch")
    history = trainer.fit(nan_dataset(), epochs=2, verbose=0)
    assert trainer.skipped_batches == 2
    assert int(trainer.optimizer.iterations.numpy()) == 2
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(history["loss"]).all()


def test_dataset_of_unknown_length_with_progress_bar(capsys):
    data = dataset(12, batch=2).filter(lambda x, y: tf.reduce_sum(y) > 0)
    assert int(data.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    history = Trainer(make_model(), bce(), keras.optimizers.Adam(0.01)).fit(data, epochs=2, verbose=1)
    assert len(history["loss"]) == 2
    assert "6/6" in capsys.readouterr().out


def test_repeating_dataset_needs_steps_per_epoch_and_reads_on():
    trainer = Trainer(make_model(), bce(), keras.optimizers.Adam(0.01))
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        trainer.fit(dataset().repeat(), epochs=1, verbose=0)
    trainer.fit(dataset(8, batch=4).repeat(), epochs=3, steps_per_epoch=3, verbose=0)
    assert int(trainer.optimizer.iterations.numpy()) == 9


def test_evaluate_resets_metrics_and_predict_matches_the_model():
    model = make_model(7)
    trainer = Trainer(model, bce(), keras.optimizers.Adam(0.01), metrics=["binary_accuracy"])
    first = trainer.evaluate(dataset(8))
    assert trainer.evaluate(dataset(8)) == first
    x, y = arrays(8)
    assert first["loss"] == pytest.approx(float(bce()(y, model(x))), rel=1e-5)
    np.testing.assert_allclose(trainer.predict(dataset(8)), model(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(trainer.predict(x, batch_size=3), model(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(trainer.predict_on_batch(x[:2]), model(x[:2]).numpy(), rtol=1e-6)


def test_multi_output_losses_weights_and_metrics():
    set_seed(8)
    inputs = keras.Input((8, 8, 1))
    seg = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="seg")(inputs)
    recon = keras.layers.Conv2D(1, 3, padding="same", name="recon")(inputs)
    model = keras.Model(inputs, [seg, recon])
    x, y = arrays(8)
    data = tf.data.Dataset.from_tensor_slices((x, {"seg": y, "recon": x})).batch(4)
    trainer = Trainer(model, {"seg": bce(), "recon": keras.losses.MeanSquaredError()}, keras.optimizers.Adam(0.01),
                      loss_weights={"recon": 0.1}, metrics={"seg": [keras.metrics.BinaryAccuracy(name="acc")]})
    logs = trainer.evaluate(data)
    assert sorted(logs) == ["loss", "recon_loss", "seg_acc", "seg_loss"]
    assert logs["loss"] == pytest.approx(logs["seg_loss"] + 0.1 * logs["recon_loss"], rel=1e-5)
    history = trainer.fit(data, epochs=2, verbose=0)
    assert history["seg_loss"][1] < history["seg_loss"][0]


def test_bad_arguments_are_config_errors():
    model = make_model()
    with pytest.raises(ConfigError, match="on_nan"):
        Trainer(model, bce(), keras.optimizers.SGD(), on_nan="ignore")
    with pytest.raises(ConfigError, match="unknown output"):
        Trainer(model, {"nope": bce()}, keras.optimizers.SGD())
    with pytest.raises(ConfigError, match="distinct names"):
        Trainer(model, bce(), keras.optimizers.SGD(), metrics=[keras.metrics.BinaryAccuracy(name="loss")])
    trainer = Trainer(model, bce(), keras.optimizers.SGD())
    x, _ = arrays(4)
    with pytest.raises(ConfigError, match=r"\(x, y\)"):
        trainer.fit(tf.data.Dataset.from_tensor_slices(x).batch(2), epochs=1, verbose=0)
    with pytest.raises(ConfigError, match="tf.data.Dataset"):
        trainer.fit(arrays(4), epochs=1, verbose=0)
    with pytest.raises(ConfigError, match="resume=True needs"):
        trainer.fit(dataset(), epochs=1, verbose=0, resume=True)
    with pytest.raises(ConfigError, match="takes no sample_weight"):
        x, y = arrays(4)
        plain = Trainer(model, lambda t, p: keras.ops.mean((t - p) ** 2), keras.optimizers.SGD())
        plain.fit(tf.data.Dataset.from_tensor_slices((x, y, np.ones(4, "float32"))).batch(2), epochs=1, verbose=0)


def test_jit_compiled_step_matches_the_plain_step():
    results = []
    for jit in (False, True):
        model = make_model(9)
        Trainer(model, bce(), keras.optimizers.SGD(0.5), jit_compile=jit).fit(dataset(8), epochs=2, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
