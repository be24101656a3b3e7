"""Calibrate the memory model of `tfseg.datasets.fingerprint.suggest_settings` on this machine.

For each network and input size, a fresh child process builds the model, runs one warm-up step at
a tiny size (so the graph, weights and allocator pools are in place), notes its peak resident
memory, then runs one step at the measured size and notes the peak again. The difference is what
that size costs. A training step is a forward and a backward pass (`GradientTape`, a Dice-like
loss); an inference step is one forward pass with `training=False`.

The figure the memory model uses is the cost per voxel per initial filter, in bytes::

    bytes_per_voxel_filter = (peak_at_size - peak_after_warmup) / (batch * voxels * init_filters)

Run:
    PYTHONPATH=$PWD python benchmarks/bench_memory_model.py [--out benchmarks/results/memory_model.json]
"""
import argparse
import json
import os
import subprocess
import sys

CASES = [
    # (builder, spatial_dims, init_filters, channels, sizes)
    ("segresnet", 3, 8, 4, [(32, 32, 32), (48, 48, 48), (64, 64, 64)]),
    ("segresnet", 2, 16, 1, [(128, 128), (256, 256)]),
]


def _child(model_name, spatial_dims, init_filters, channels, size, mode):
    """Runs in the child: print the peak-memory delta of one step at `size` as JSON."""
    import numpy as np
    import tensorflow as tf
    from peak_memory import own_peak_rss_mb

    from tfseg.models.segresnet import segresnet

    model = segresnet((None,) * spatial_dims + (channels,), num_classes=3, spatial_dims=spatial_dims,
                      init_filters=init_filters, dropout=0.0)

    def step(shape):
        x = tf.constant(np.random.default_rng(0).normal(size=(1,) + shape + (channels,)).astype("float32"))
        if mode == "inference":
            return model(x, training=False)
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss = tf.reduce_mean(y * y)
        return tape.gradient(loss, model.trainable_variables)

    step((16,) * spatial_dims)
    before = own_peak_rss_mb()
    step(tuple(size))
    after = own_peak_rss_mb()
    voxels = int(np.prod(size))
    delta = (after - before) * 2**20
    print(json.dumps({"model": model_name, "mode": mode, "size": list(size), "init_filters": init_filters,
                      "channels": channels, "peak_delta_mb": round(after - before, 1),
                      "bytes_per_voxel_filter": round(delta / (voxels * init_filters), 1)}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "memory_model.json"))
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, dims, filters, channels, size, mode = args.child
        _child(name, int(dims), int(filters), int(channels), tuple(int(s) for s in size.split("x")), mode)
        return 0
    rows = []
    for name, dims, filters, channels, sizes in CASES:
        for size in sizes:
            for mode in ("train", "inference"):
                command = [sys.executable, os.path.abspath(__file__), "--child", name, str(dims),
                           str(filters), str(channels), "x".join(map(str, size)), mode]
                out = subprocess.run(command, capture_output=True, text=True, check=True,
                                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]))
    from tfseg.utils.atomic import atomic_write_json

    atomic_write_json(args.out, {"machine": os.uname().machine, "cpus": os.cpu_count(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
