"""A non-finite training loss names the bad rows of its batch (and their cases when known) and offers
the skip policy; `nan_policy="skip_batch"` goes on without applying that batch."""
import numpy as np
import pytest


def _setup(**kwargs):
    import keras
    import tensorflow as tf

    from tfseg.training import Trainer

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    x = np.ones((4, 3), "float32")
    x[3, 1] = np.nan  # case 3, second row of the second batch
    y = np.arange(4, dtype="float32")[:, None]  # the case index, so describe_rows can name it
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    return Trainer(model, keras.losses.MeanSquaredError(), keras.optimizers.SGD(0.01), **kwargs), data


def _case_names(batch, rows):
    targets = np.asarray(batch[1])
    return ", ".join(f"case-{int(targets[row, 0])}" for row in rows)


def test_stop_names_the_rows_and_cases_and_offers_the_skip_policy():
    from tfseg.training import NonFiniteLossError

    trainer, data = _setup(nan_policy="stop", describe_rows=_case_names)
    with pytest.raises(NonFiniteLossError) as caught:
        trainer.fit(data, epochs=1, verbose=0)
    message = str(caught.value)
    assert "at epoch 1, step 2 (the inputs of batch row(s) [1] hold NaN/inf; cases: case-3)" in message
    assert "nan_policy='skip_batch'" in message


def test_skip_batch_goes_on():
    trainer, data = _setup(nan_policy="skip_batch")
    before = [w.copy() for w in trainer.model.get_weights()]
    history = trainer.fit(data, epochs=2, verbose=0)
    assert trainer.skipped_batches == 2 and len(history["loss"]) == 2
    assert all(np.isfinite(w).all() for w in trainer.model.get_weights())
    assert any(not np.array_equal(a, b) for a, b in zip(before, trainer.model.get_weights()))
