"""3D training input pipeline throughput: raw decode floor vs tfseg `brats_dataset` vs MONAI.

Same data, same machine, one run: synthetic BraTS-size cases (4 x 240x240x155 int16 .nii.gz +
a uint8 seg, written once with `tfseg.datasets.synthetic.ensure_brats`), 2 workers, z-score on
non-zero voxels per channel, random 128^3 crop, random flips per axis, intensity scale/shift.

1. floor: gunzip + read of the 5 files of a case with nibabel, 1 process, then 2 threads;
2. tfseg: `tfseg.data.pipeline3d.brats_dataset` with `num_parallel_reads` = workers;
3. MONAI (optional, skipped with a message when not importable): LoadImaged ->
   EnsureChannelFirstd -> NormalizeIntensityd(nonzero, channel_wise) -> RandSpatialCropd(128^3)
   -> RandFlipd x3 -> RandScaleIntensityd(0.1) -> RandShiftIntensityd(0.1) through
   `monai.data.DataLoader(num_workers=workers)`.

Each measurement runs in a fresh child process so its peak memory (resident set of the process
and its worker processes, sampled from /proc every 20 ms) is its own. Times include everything
after one untimed warm-up pass of each pipeline, over `--epochs` passes (MONAI still restarts its
workers every epoch, as it does by default); the files
are read once beforehand so that every measurement finds them in the page cache.

Usage:
    python benchmarks/bench_brats_pipeline.py [--cases 8] [--epochs 2] [--workers 2] [--json]
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

from peak_memory import own_peak_rss_mb
from ratio_table import ratio_table

DEFAULT_ROOT = os.path.join(os.environ.get("TMPDIR", "/tmp"), "tfseg_bench_brats")


class PeakRss:
    """Samples the resident memory of this process plus its children (MiB) in a thread."""

    def __init__(self, interval=0.02):
        self.interval, self.peak = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid):
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return 0.0

    @staticmethod
    def _children(pid):
        found = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    found += [int(c) for c in handle.read().split()]
        except OSError:
            pass
        return found

    def _run(self):
        while not self._stop.is_set():
            pids, total = [os.getpid()], 0.0
            while pids:
                pid = pids.pop()
                total += self._rss(pid)
                pids += self._children(pid)
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, own_peak_rss_mb())



def ensure_data(root, cases, shape):
    from tfseg.datasets.synthetic import ensure_brats
    return ensure_brats(root, num_cases=cases, shape=tuple(shape), seed=0).cases


def run_floor(cases, epochs, workers):
    import nibabel as nib
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor

    def read(case):
        for path in tuple(case.images) + (case.label,):
            np.asanyarray(nib.load(path).dataobj)

    results = {}
    for threads in (1, workers):
        with PeakRss() as rss:
            start = time.perf_counter()
            for _ in range(epochs):
                if threads == 1:
                    for case in cases:
                        read(case)
                else:
                    with ThreadPoolExecutor(threads) as pool:
                        list(pool.map(read, cases))
            seconds = time.perf_counter() - start
        results[f"floor_{threads}"] = dict(cases_per_s=epochs * len(cases) / seconds, seconds=seconds,
                                          peak_rss_mb=rss.peak)
    return results


def run_tfseg(cases, epochs, workers, crop):
    from tfseg.data.pipeline3d import brats_dataset
    dataset = brats_dataset(cases, crop_size=(crop,) * 3, batch_size=1, training=True, seed=0,
                            num_parallel_reads=workers, augment=True)
    for _ in dataset:  # one untimed warm-up epoch (graph tracing, thread pools), as for MONAI
        pass
    count = 0
    with PeakRss() as rss:
        start = time.perf_counter()
        for _ in range(epochs):
            for image, target in dataset:
                count += int(image.shape[0])
        seconds = time.perf_counter() - start
    assert tuple(image.shape) == (1, crop, crop, crop, 4) and tuple(target.shape) == (1, crop, crop, crop, 3)
    return {"tfseg": dict(cases_per_s=count / seconds, seconds=seconds, peak_rss_mb=rss.peak)}


def run_monai(cases, epochs, workers, crop):
    try:
        import monai
        from monai import transforms as mt
        from monai.data import DataLoader, Dataset
    except ImportError as exc:
        return {"monai": dict(skipped=f"MONAI not importable ({exc}); pip install torch monai to compare")}
    keys = ["image", "label"]
    pipeline = mt.Compose([
        mt.LoadImaged(keys=keys),
        mt.EnsureChannelFirstd(keys=keys),
        mt.NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True),
        mt.RandSpatialCropd(keys=keys, roi_size=(crop,) * 3, random_size=False),
        mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
        mt.RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
        mt.RandScaleIntensityd(keys="image", factors=0.1, prob=1.0),
        mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=1.0),
    ])
    data = [{"image": list(c.images), "label": c.label} for c in cases]
    loader = DataLoader(Dataset(data, pipeline), batch_size=1, shuffle=True, num_workers=workers)
    for _ in loader:  # one untimed warm-up epoch, as for tfseg
        pass
    count = 0
    with PeakRss() as rss:
        start = time.perf_counter()
        for _ in range(epochs):
            for batch in loader:
                count += int(batch["image"].shape[0])
        seconds = time.perf_counter() - start
    assert tuple(batch["image"].shape) == (1, 4, crop, crop, crop)
    return {"monai": dict(cases_per_s=count / seconds, seconds=seconds, peak_rss_mb=rss.peak,
                          version=monai.__version__)}


def child(args):
    cases = ensure_data(args.root, args.cases, args.shape)
    if args.only == "floor":
        return run_floor(cases, args.epochs, args.workers)
    if args.only == "tfseg":
        return run_tfseg(cases, args.epochs, args.workers, args.crop)
    return run_monai(cases, args.epochs, args.workers, args.crop)


def table(results, workers):
    labels = {"floor_1": "raw decode floor, 1 process", f"floor_{workers}": f"raw decode floor, {workers} threads",
              "tfseg": f"tfseg brats_dataset, {workers} readers", "monai": f"MONAI DataLoader, {workers} workers"}
    return ratio_table(results, labels, "cases/s", "floor_1", "monai", "MONAI", rate_key="cases_per_s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=DEFAULT_ROOT, help="dataset folder (written once if missing)")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155), help="NIfTI (x, y, z) size")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", choices=("floor", "tfseg", "monai"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        print(json.dumps(child(args)))
        return 0
    cases = ensure_data(args.root, args.cases, args.shape)
    for case in cases:   # one untimed pass so every measurement finds the files in the page cache
        for path in tuple(case.images) + (case.label,):
            with open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass
    results = dict(config=dict(cases=args.cases, shape=list(args.shape), epochs=args.epochs, workers=args.workers,
                               crop=args.crop, cpus=os.cpu_count()))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for which in ("floor", "tfseg") + (() if args.skip_monai else ("monai",)):
        command = [sys.executable, os.path.abspath(__file__), "--only", which, "--root", args.root,
                   "--cases", str(args.cases), "--epochs", str(args.epochs), "--workers", str(args.workers),
                   "--crop", str(args.crop), "--shape", *map(str, args.shape)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode:
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(f"the {which} measurement failed (exit {done.returncode})")
        results.update(json.loads(done.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(results, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
