"""BraTS-2D (workflow W3) training input throughput: raw HDF5 read floor vs tfseg `patch_dataset` vs TorchIO.

Same data, same machine, one run: a synthetic BraTS dataset (`tfseg.datasets.synthetic.ensure_brats`,
written once) cut into an HDF5 patch store (`tfseg.data.patch_store.ensure_patch_store`: FLAIR,
T1c, T2; 128x128 patches, stride 64, patches with tumour only), written once and untimed. Then,
each in a fresh child process so that its peak memory is its own:

1. floor: h5py reads of the store in 32-patch blocks, in a random block order (the order
   `patch_dataset` reads them in), no transform;
2. tfseg: `patch_dataset(store, batch_size=32, training=True, map_fn=sample_transform(config, True))`
   with `tfseg.workflows.brats2d.Brats2DConfig` defaults (the W3 chain: pad/crop, one of
   flip / affine / anisotropy / elastic with p=0.95, percentile stretch to [-1, 1] in the brain
   mask, one of noise / bias field with p=0.95, label remap 4 -> 3), TensorFlow's default threads;
3. TorchIO (skipped with a message when not importable): a torch `Dataset` reading one patch per
   item from the same store into a `tio.Subject` (image `ScalarImage` (C, H, W, 1), label
   `LabelMap` (1, H, W, 1)) through the W3 `tio.Compose`: CropOrPad((128, 128, 1)),
   OneOf{RandomFlip(axes=(0,)), RandomAffine(scales 0.9-1.1 in-plane, degrees=(0, 0, 20)),
   RandomAnisotropy(axes=(0, 1), downsampling=(1.5, 2.5)), RandomElasticDeformation(7 control
   points, max_displacement=(7.5, 7.5, 0))} p=0.95, RescaleIntensity((-1, 1), percentiles=(0.5,
   99.5), masking_method=x > 0), OneOf{RandomNoise(std=(0, 0.1)), RandomBiasField(0.1)} p=0.95,
   RemapLabels({4: 3}); `DataLoader(batch_size=32, num_workers=workers, shuffle=True)`, one torch
   thread and one SimpleITK thread per worker.

Each pipeline first runs one untimed warm-up pass of `--warmup` patches (graph tracing, thread
pools), then is timed over `--patches` patches, starting new epochs as needed (TorchIO's
DataLoader restarts its workers every epoch, as it does by default). Peak memory is the resident
set of the child process and its worker processes, sampled every 20 ms. The store is read once
beforehand so that every measurement finds it in the page cache. When the store holds fewer
patches than `--patches` (small `--shape`), every pipeline restarts its epochs many times and the
figures include that start-up cost; at the W3 size (8 cases of 240x240x155) one epoch covers the
default `--patches`.

Usage:
    python benchmarks/bench_brats2d_patches.py [--cases 8] [--shape 240 240 155] [--patches 4096]
        [--workers 2] [--json [PATH]]
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_brats_pipeline import PeakRss  # noqa: E402
from ratio_table import ratio_table  # noqa: E402

DEFAULT_ROOT = os.path.join(os.environ.get("TMPDIR", "/tmp"), "tfseg_bench_brats2d")
DEFAULT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "brats2d_patches.json")
CHANNELS = ("flair", "t1ce", "t2")
BATCH = 32


def store_file(args):
    shape = "x".join(map(str, args.shape))
    return os.path.join(args.root, f"patches_{args.cases}_{shape}_{args.patch_size}_{args.stride}.h5")


def ensure_store(args):
    """The synthetic dataset and its patch store, each written only when missing or stale."""
    from tfseg.data.patch_store import ensure_patch_store
    from tfseg.datasets.synthetic import ensure_brats

    data = ensure_brats(os.path.join(args.root, "data"), num_cases=args.cases, shape=tuple(args.shape), seed=0)
    return ensure_patch_store(store_file(args), data.cases, patch_size=args.patch_size, stride=args.stride,
                              channels=CHANNELS)


def timed(batches, total, warmup):
    """Run `batches()` (a fresh iterator per epoch) for `warmup` patches untimed, then `total` timed.

    Returns:
        `(patches, seconds, peak_rss_mb, last_batch)`.
    """
    def consume(limit):
        count, last = 0, None
        while count < limit:
            for batch in batches():
                last = batch
                count += len(batch[0])
                if count >= limit:
                    break
        return count, last

    consume(warmup)
    with PeakRss() as rss:
        start = time.perf_counter()
        count, last = consume(total)
        seconds = time.perf_counter() - start
    return count, seconds, rss.peak, last


def result(count, seconds, peak, **extra):
    return dict(patches=count, seconds=seconds, patches_per_s=count / seconds, peak_rss_mb=peak, **extra)


def run_floor(args):
    import h5py
    import numpy as np

    path = store_file(args)
    rng = np.random.default_rng(0)
    with h5py.File(path, "r") as handle:
        images, labels = handle["images"], handle["labels"]
        starts = np.arange(0, images.shape[0], BATCH)

        def batches():
            for start in rng.permutation(starts):
                yield images[start:start + BATCH], labels[start:start + BATCH]

        count, seconds, peak, last = timed(batches, args.patches, args.warmup)
    assert last[0].dtype == np.float32 and last[0].shape[1:] == (args.patch_size, args.patch_size, 3)
    return {"floor": result(count, seconds, peak)}


def run_tfseg(args):
    import numpy as np
    import tensorflow as tf

    from tfseg.data.patch_store import patch_dataset
    from tfseg.workflows.brats2d import Brats2DConfig, sample_transform

    config = Brats2DConfig()
    config.patches.patch_size, config.patches.stride = args.patch_size, args.stride
    dataset = patch_dataset(store_file(args), batch_size=BATCH, training=True, seed=0,
                            map_fn=sample_transform(config, True))
    count, seconds, peak, (image, label) = timed(lambda: iter(dataset), args.patches, args.warmup)
    assert tuple(image.shape[1:]) == (args.patch_size, args.patch_size, 3) and image.dtype == tf.float32
    assert set(np.unique(label.numpy())) <= {0, 1, 2, 3}
    return {"tfseg": result(count, seconds, peak, tensorflow=tf.__version__)}


def brain_mask(tensor):
    """TorchIO masking method: the brain is where the raw intensity is above zero."""
    return tensor > 0


class PatchStoreDataset:
    """A torch map-style dataset over a patch store: one `tio.Subject` per patch, transformed.

    The HDF5 file is opened lazily in each worker process (h5py handles do not survive a fork).
    """

    def __init__(self, path, transform):
        import h5py
        self.path, self.transform, self.handle = path, transform, None
        with h5py.File(path, "r") as handle:
            self.count = handle["images"].shape[0]

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        import h5py
        import torch
        import torchio as tio

        if self.handle is None:
            self.handle = h5py.File(self.path, "r")
        image = self.handle["images"][index]            # (H, W, C) float32
        label = self.handle["labels"][index]            # (H, W) uint8, BraTS values
        image = torch.from_numpy(image.transpose(2, 0, 1)[..., None].copy())
        # float32 labels: TorchIO's affine and elastic resampling return float32 label maps, the
        # other transforms keep the input dtype; one dtype for all keeps every batch uniform.
        label = torch.from_numpy(label[None, ..., None].astype("float32"))
        subject = tio.Subject(image=tio.ScalarImage(tensor=image), label=tio.LabelMap(tensor=label))
        return self.transform(subject)


def w3_compose(patch_size):
    import torchio as tio

    spatial = tio.OneOf({
        tio.RandomFlip(axes=(0,)): 1.0,
        tio.RandomAffine(scales=(0.9, 1.1, 0.9, 1.1, 1.0, 1.0), degrees=(0, 0, 20)): 1.0,
        tio.RandomAnisotropy(axes=(0, 1), downsampling=(1.5, 2.5)): 1.0,
        tio.RandomElasticDeformation(num_control_points=7, max_displacement=(7.5, 7.5, 0)): 1.0,
    }, p=0.95)
    artifacts = tio.OneOf({tio.RandomNoise(std=(0, 0.1)): 1.0, tio.RandomBiasField(coefficients=0.1): 1.0}, p=0.95)
    return tio.Compose([
        tio.CropOrPad((patch_size, patch_size, 1)),
        spatial,
        tio.RescaleIntensity(out_min_max=(-1, 1), percentiles=(0.5, 99.5), masking_method=brain_mask),
        artifacts,
        tio.RemapLabels({4: 3}),
    ])


def one_thread(_worker=None):
    """Each DataLoader worker (and the main process) runs torch and SimpleITK on one thread."""
    import SimpleITK as sitk
    import torch
    torch.set_num_threads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def run_torchio(args):
    try:
        import numpy as np
        import torch
        import torchio as tio
        from torch.utils.data import DataLoader
    except ImportError as exc:
        return {"torchio": dict(skipped=f"TorchIO not importable ({exc}); pip install torchio to compare")}
    one_thread()
    torch.manual_seed(0)
    dataset = PatchStoreDataset(store_file(args), w3_compose(args.patch_size))
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=args.workers, shuffle=True,
                        worker_init_fn=one_thread)

    def batches():
        for batch in loader:
            yield batch["image"][tio.DATA], batch["label"][tio.DATA]

    count, seconds, peak, (image, label) = timed(batches, args.patches, args.warmup)
    assert tuple(image.shape[1:]) == (3, args.patch_size, args.patch_size, 1) and image.dtype == torch.float32
    assert set(np.unique(label.numpy()).tolist()) <= {0, 1, 2, 3}
    return {"torchio": result(count, seconds, peak, torchio=tio.__version__, torch=torch.__version__)}


def child(args):
    runner = {"floor": run_floor, "tfseg": run_tfseg, "torchio": run_torchio}[args.only]
    return runner(args)


def table(results, workers):
    labels = {"floor": "raw h5py block reads, 1 process", "tfseg": "tfseg patch_dataset + W3 map_fn",
              "torchio": f"TorchIO DataLoader, {workers} workers"}
    return ratio_table(results, labels, "patches/s", "floor", "torchio", "TorchIO", rate_key="patches_per_s", digits=3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=DEFAULT_ROOT, help="dataset and store folder (written once if missing)")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155), help="NIfTI (x, y, z) size")
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--patches", type=int, default=4096, help="patches timed per pipeline")
    parser.add_argument("--warmup", type=int, default=512, help="patches of the untimed warm-up pass")
    parser.add_argument("--workers", type=int, default=2, help="TorchIO DataLoader workers")
    parser.add_argument("--skip-torchio", action="store_true")
    parser.add_argument("--json", nargs="?", const=DEFAULT_JSON, metavar="PATH",
                        help=f"also write the results as JSON (default path {DEFAULT_JSON})")
    parser.add_argument("--only", choices=("floor", "tfseg", "torchio"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        print(json.dumps(child(args)))
        return 0
    store = ensure_store(args)
    with open(store.path, "rb") as handle:   # untimed: every measurement finds the store in the page cache
        while handle.read(1 << 24):
            pass
    results = dict(config=dict(cases=args.cases, shape=list(args.shape), patch_size=args.patch_size,
                               stride=args.stride, channels=list(CHANNELS), store_patches=store.count,
                               batch_size=BATCH, patches=args.patches, warmup=args.warmup, workers=args.workers,
                               cpus=os.cpu_count()))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for which in ("floor", "tfseg") + (() if args.skip_torchio else ("torchio",)):
        command = [sys.executable, os.path.abspath(__file__), "--only", which, "--root", args.root,
                   "--cases", str(args.cases), "--shape", *map(str, args.shape), "--patch-size", str(args.patch_size),
                   "--stride", str(args.stride), "--patches", str(args.patches), "--warmup", str(args.warmup),
                   "--workers", str(args.workers)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode:
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(f"the {which} measurement failed (exit {done.returncode})")
        results.update(json.loads(done.stdout.strip().splitlines()[-1]))
    tfseg, torchio, floor = (results.get(k, {}).get("patches_per_s") for k in ("tfseg", "torchio", "floor"))
    results["ratios"] = dict(tfseg_over_torchio=tfseg / torchio if tfseg and torchio else None,
                             tfseg_over_floor=tfseg / floor if tfseg and floor else None)
    print(f"{store.count} patches in the store ({args.cases} cases of {tuple(args.shape)}), "
          f"{args.patches} timed per pipeline, batch {BATCH}, {os.cpu_count()} CPUs")
    print(table(results, args.workers))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
