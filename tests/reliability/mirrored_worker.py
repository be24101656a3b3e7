"""Train a tiny model on one replica and on a 2-replica MirroredStrategy (two logical CPUs); print JSON.

Run as a script (the logical devices must be set before TensorFlow starts). The optimizer is
created outside `strategy.scope()`, as the workflows do; the mirrored run checkpoints every
epoch, is resumed by a second trainer for its last epoch, then saved and exported.
"""
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfseg.training import Trainer  # noqa: E402


def make_model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))


def main():
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # global batch 4: 4 steps per epoch

    single = Trainer(make_model(), keras.losses.BinaryCrossentropy(), keras.optimizers.Adam(1e-2))
    single_history = single.fit(data, epochs=3, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = make_model()
    folder = tempfile.mkdtemp()
    optimizer = keras.optimizers.Adam(1e-2)  # outside the scope
    trainer = Trainer(model, keras.losses.BinaryCrossentropy(), optimizer, strategy=strategy)
    trainer.fit(data, epochs=2, verbose=0, checkpoint_dir=folder)
    with strategy.scope():
        model = make_model()
    resumed = Trainer(model, keras.losses.BinaryCrossentropy(), keras.optimizers.Adam(1e-2), strategy=strategy)
    history = resumed.fit(data, epochs=3, verbose=0, checkpoint_dir=folder, resume=True)
    # what a workflow writes next: the model with its optimizer, and the SavedModel
    from tfseg.export.savedmodel import ServingSpec, export_savedmodel
    from tfseg.utils.atomic import atomic_save_model

    atomic_save_model(model, os.path.join(folder, "model.keras"))
    export_savedmodel(model, os.path.join(folder, "saved_model"), ServingSpec(stride=1, activation="sigmoid"))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "single": single_history["loss"],
                      "mirrored": history["loss"], "iterations": int(resumed.optimizer.iterations.numpy()),
                      "max_weight_difference": max(float(np.max(np.abs(a - b))) for a, b in
                                                   zip(single.model.get_weights(), model.get_weights()))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
