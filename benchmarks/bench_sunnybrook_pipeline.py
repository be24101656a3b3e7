"""Sunnybrook input pipeline throughput against the raw DICOM decode floor, in one run.

    python benchmarks/bench_sunnybrook_pipeline.py [--cases 15] [--images-per-case 20] [--json out.json]

Measures, on a synthetic Sunnybrook-layout dataset (real 16-bit DICOM + contour text files):

1. raw decode floor: `pydicom.dcmread(f).pixel_array` for every contoured image, one thread;
2. tfseg decode stage: DICOM read + rescale + contour rasterization (`load_samples`, all cores);
3. tf.data pipeline, first epoch (normalize, resize, cache fill) and later epochs (from cache,
   shuffled, flipped and rotated), batches of 8 at the recipe's 256x256;
4. the CPU FCN-8s recipe model's training speed (one step = forward + backward + Adam), to show
   how far the pipeline is from being the bottleneck.
"""
import argparse
import json
import os
import tempfile
import time



def rate(count, seconds):
    return count / seconds if seconds > 0 else float("inf")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=15)
    parser.add_argument("--images-per-case", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=256, help="training size the pipeline resizes to")
    parser.add_argument("--epochs", type=int, default=3, help="cached epochs to time")
    parser.add_argument("--train-steps", type=int, default=5, help="model steps to time (0 to skip)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    import pydicom

    from tfseg.data.loading import load_samples
    from tfseg.data.pipeline import segmentation_dataset
    from tfseg.datasets.sunnybrook import find_sunnybrook, load_sample
    from tfseg.datasets.synthetic import write_sunnybrook

    results = {}
    with tempfile.TemporaryDirectory() as root:
        written = write_sunnybrook(root, num_cases=args.cases, images_per_case=args.images_per_case + 2,
                                   contoured_per_case=args.images_per_case, seed=0)
        records = find_sunnybrook(written.image_dir, written.contour_dir)
        n = len(records)

        start = time.perf_counter()
        for record in records:
            pydicom.dcmread(record.image_path).pixel_array
        results["raw_decode_images_per_s"] = rate(n, time.perf_counter() - start)

        start = time.perf_counter()
        loaded = load_samples(records, load_sample, workers=1)
        results["tfseg_decode_1_thread_images_per_s"] = rate(n, time.perf_counter() - start)
        start = time.perf_counter()
        loaded = load_samples(records, load_sample)
        results["tfseg_decode_all_cores_images_per_s"] = rate(n, time.perf_counter() - start)

        size = (args.image_size, args.image_size)
        dataset = segmentation_dataset(loaded.images, loaded.masks, size, batch_size=8, training=True, seed=0)
        start = time.perf_counter()
        seen = sum(int(x.shape[0]) for x, _ in dataset)
        results["pipeline_first_epoch_images_per_s"] = rate(seen, time.perf_counter() - start)
        start = time.perf_counter()
        seen = sum(int(x.shape[0]) for _ in range(args.epochs) for x, _ in dataset)
        results["pipeline_cached_epochs_images_per_s"] = rate(seen, time.perf_counter() - start)
        results["images"] = n

        if args.train_steps:
            import keras
            import tensorflow as tf

            from tfseg.losses import DiceCrossEntropyLoss
            from tfseg.models import fcn8s

            model = fcn8s((args.image_size, args.image_size, 1), 2, width=0.25, fc_units=256, dropout=0.1)
            optimizer = keras.optimizers.Adam(1e-3)
            loss_fn = DiceCrossEntropyLoss()

            @tf.function
            def step(x, y):
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                              model.trainable_variables))
                return loss

            batches = iter(dataset.repeat())
            step(*next(batches))
            start = time.perf_counter()
            for _ in range(args.train_steps):
                step(*next(batches))
            results["fcn8s_cpu_train_images_per_s"] = rate(8 * args.train_steps, time.perf_counter() - start)

    floor = results["raw_decode_images_per_s"]
    print(f"{'stage':<42}{'images/s':>12}{'x raw decode':>14}")
    for key, value in results.items():
        if key.endswith("_per_s"):
            print(f"{key[:-len('_images_per_s')]:<42}{value:>12.1f}{value / floor:>14.2f}")
    print(f"({results['images']} contoured images, {os.cpu_count()} cores)")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(results, stream, indent=2)
    return results


if __name__ == "__main__":
    main()
