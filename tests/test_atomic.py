"""Atomic writes: the destination holds the old content or the new one, never a mix or leftovers."""
import json
import os

import numpy as np
import pytest

from tfseg.errors import ConfigError, TfsegError
from tfseg.utils.atomic import (atomic_path, atomic_save_model, atomic_write_json, atomic_write_text,
                                model_without_optimizer)


def listing(folder):
    return sorted(os.listdir(folder))


def test_write_text_creates_and_replaces(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert listing(path.parent) == ["a.txt"]


def test_write_json_converts_numpy_values(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"b": np.float32(0.5), "a": np.arange(3), "n": np.int64(4)}, sort_keys=True)
    text = path.read_text()
    assert json.loads(text) == {"a": [0, 1, 2], "b": 0.5, "n": 4}
    assert text.index('"a"') < text.index('"b"')
    assert text.endswith("\n")


def test_failure_leaves_file_untouched_and_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("original")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half")
            raise RuntimeError("boom")
    assert path.read_text() == "original"
    assert listing(tmp_path) == ["a.txt"]


def test_failure_leaves_folder_untouched_and_no_temp(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            os.makedirs(tmp)
            with open(os.path.join(tmp, "new.txt"), "w") as handle:
                handle.write("new")
            raise KeyboardInterrupt
    assert listing(target) == ["old.txt"]
    assert listing(tmp_path) == ["ckpt"]


def test_folder_replaces_existing_folder(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert tmp.endswith("ckpt") and not os.path.exists(tmp)
        os.makedirs(os.path.join(tmp, "inner"))
        with open(os.path.join(tmp, "inner", "new.txt"), "w") as handle:
            handle.write("new")
    assert listing(target) == ["inner"]
    assert (target / "inner" / "new.txt").read_text() == "new"
    assert listing(tmp_path) == ["ckpt"]


def test_file_replaces_folder(tmp_path):
    target = tmp_path / "thing"
    target.mkdir()
    with atomic_path(target) as tmp:
        with open(tmp, "w") as handle:
            handle.write("now a file")
    assert target.read_text() == "now a file"
    assert listing(tmp_path) == ["thing"]


def test_nothing_written_is_an_error(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("original")
    with pytest.raises(TfsegError, match="nothing was written"):
        with atomic_path(path):
            pass
    assert path.read_text() == "original"
    assert listing(tmp_path) == ["a.txt"]


def _model():
    import keras

    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))


def test_atomic_save_model_round_trip(tmp_path):
    import keras

    model = _model()
    path = tmp_path / "best.keras"
    atomic_save_model(model, path)
    atomic_save_model(model, path)  # replaces
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert listing(tmp_path) == ["best.keras"]


def test_atomic_save_model_without_optimizer_is_smaller_and_reattaches(tmp_path):
    import keras

    model = _model()
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    model.optimizer = optimizer
    atomic_save_model(model, tmp_path / "with.keras")
    atomic_save_model(model, tmp_path / "without.keras", include_optimizer=False)
    assert model.optimizer is optimizer
    assert os.path.getsize(tmp_path / "without.keras") < os.path.getsize(tmp_path / "with.keras")
    assert keras.saving.load_model(tmp_path / "without.keras").count_params() == model.count_params()


def test_model_without_optimizer_reattaches_after_error():
    import keras

    model = _model()
    model.optimizer = keras.optimizers.SGD()
    with pytest.raises(ValueError):
        with model_without_optimizer(model):
            assert model.optimizer is None
            raise ValueError
    assert isinstance(model.optimizer, keras.optimizers.SGD)


def test_atomic_save_model_needs_keras_suffix(tmp_path):
    with pytest.raises(ConfigError, match=".keras"):
        atomic_save_model(_model(), tmp_path / "model.h5")
    assert listing(tmp_path) == []
