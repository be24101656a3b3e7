"""One rank of the Horovod tests in test_horovod.py, started by `horovodrun --gloo -np 2`.

    python horovod_worker.py step OUT_DIR      # one training step on this rank's part of a fixed batch
    python horovod_worker.py workflow OUT_DIR  # a 2-epoch Sunnybrook workflow run with distribute="horovod"

Each rank writes its results as `<what><rank>.npy/.json` into OUT_DIR for the test to compare.
"""
import json
import os
import sys

import numpy as np

LEARNING_RATE = 0.1
GLOBAL_BATCH = 8
RANK0_EXAMPLES = 5  # rank 0 trains on 5 examples, rank 1 on 3: the averaging must weight by batch size


def problem():
    """A fixed global batch (the same in every process)."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(GLOBAL_BATCH, 4, 4, 1)).astype("float32")
    y = rng.normal(size=(GLOBAL_BATCH, 1)).astype("float32")
    return x, y


def model(seed=7):
    """A tiny conv + dense regressor with weights drawn from `seed`."""
    import keras

    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="tanh")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(h))
    net = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    net.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in net.get_weights()])
    return net


def flat(values):
    return np.concatenate([np.ravel(np.asarray(v)) for v in values])


def step_main(out_dir):
    """Rank r starts from *different* weights (seed 7 + r); the broadcast must make rank 0's win."""
    import keras
    import tensorflow as tf

    from tfseg.training.distributed import workflow_distribution

    dist = workflow_distribution("horovod")
    rank = dist.rank
    x, y = problem()
    part = slice(0, RANK0_EXAMPLES) if rank == 0 else slice(RANK0_EXAMPLES, GLOBAL_BATCH)
    dataset = tf.data.Dataset.from_tensor_slices((x[part], y[part])).batch(GLOBAL_BATCH)
    with dist.scope():
        net = model(seed=7 + rank)
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
    trainer = dist.trainer(net, keras.losses.MeanSquaredError(), optimizer)
    history = trainer.fit(dataset, epochs=1, verbose=0)
    np.save(os.path.join(out_dir, f"weights{rank}.npy"), flat(net.get_weights()))
    with open(os.path.join(out_dir, f"step{rank}.json"), "w") as f:
        json.dump({"loss": history["loss"][0], "is_chief": bool(trainer.is_chief), "world_size": dist.world_size,
                   "kind": dist.kind, "type": type(trainer).__name__}, f)


def workflow_main(out_dir):
    """Each rank gets its own output folder: only rank 0's may contain anything afterwards."""
    from tfseg.training.distributed import workflow_distribution
    from tfseg.workflows import sunnybrook as sb

    rank = int(os.environ["HOROVOD_RANK"])
    config = sb.SunnybrookConfig(
        data=sb.DataSection(image_size=32, synthetic_cases=4, synthetic_dir=os.path.join(out_dir, "data"),
                            augment=False, val_fraction=0.25),
        model=sb.ModelSection(name="fcn8s", options={"width": 0.0625, "fc_units": 8, "dropout": 0.0}),
        train=sb.TrainSection(epochs=2, batch_size=4, learning_rate=1e-3, verbose=0),
        output_dir=os.path.join(out_dir, f"out{rank}"), distribute="auto")
    metrics = sb.run(config)
    dist = workflow_distribution("auto")  # same process: Horovod is already initialised
    with open(os.path.join(out_dir, f"workflow{rank}.json"), "w") as f:
        json.dump({"metrics": metrics, "kind": dist.kind, "is_chief": dist.is_chief}, f)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("step", "workflow"):
        sys.exit("usage: horovod_worker.py step|workflow OUT_DIR")
    {"step": step_main, "workflow": workflow_main}[sys.argv[1]](sys.argv[2])
