"""A tiny BraTS-like training run through tfseg's pipeline and Trainer, for the subprocess tests.

    python tiny_run.py DATA_DIR OUT_DIR [--deterministic] [--epochs 3] [--resume] [--kill-after-csv 2]

Writes `OUT_DIR/weights.npz` (every model weight) at the end. `--kill-after-csv N` kills this
process with SIGKILL at the end of epoch N, after `history.csv` got that epoch's row but before
its checkpoint: the worst moment for a resume.
"""
import argparse
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-after-csv", type=int)
    parser.add_argument("--fingerprint")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from tfseg.data.pipeline3d import brats_dataset
    from tfseg.datasets.brats import find_brats
    from tfseg.training import Trainer, default_callbacks, set_seed

    if args.deterministic:
        from tfseg.training.determinism import enable_determinism

        enable_determinism(5)
    else:
        set_seed(5)
    cases = find_brats(args.data)
    train = brats_dataset(cases, crop_size=(16, 16, 16), batch_size=2, seed=5, num_parallel_reads=2)
    inputs = keras.Input((16, 16, 16, 4))
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Conv3D(3, 1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    trainer = Trainer(model, keras.losses.BinaryCrossentropy(), keras.optimizers.Adam(1e-2))
    callbacks = default_callbacks(args.out, monitor="loss", mode="min", tensorboard=False)
    if args.kill_after_csv:
        class Kill(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 == args.kill_after_csv:
                    os.kill(os.getpid(), signal.SIGKILL)

        callbacks.insert(-1, Kill())  # after the CSVLogger, before the checkpoint
    trainer.fit(train, epochs=args.epochs, callbacks=callbacks, verbose=0, resume=args.resume,
                fingerprint=args.fingerprint)
    np.savez(os.path.join(args.out, "weights.npz"), *[np.asarray(w) for w in model.get_weights()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
