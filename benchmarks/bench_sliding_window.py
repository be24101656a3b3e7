"""Whole-volume sliding-window inference: tfseg against MONAI, same network size, in one run.

    python benchmarks/bench_sliding_window.py [--init-filters 16] [--roi 128] [--overlap 0.5] [--json out.json]

One BraTS-size case (4 x 240 x 240 x 155, skull-stripped synthetic brain) is predicted by:

1. MONAI 1.6 `sliding_window_inference` with `monai.networks.nets.SegResNet` (torch, CPU),
   Gaussian blending, one window per forward pass;
2. tfseg `predict_volume` with `tfseg.models.segresnet` of the same size (the same parameter
   count), the same ROI, overlap and Gaussian blending, on the full grid;
3. the same with `crop_to_nonzero=True` (tfseg's default for BraTS): windows only over the
   brain's bounding box, the rest is background.

Both networks are randomly initialized: this measures time and memory, not accuracy. Each
backend runs in a child process, so peak RSS is its own. MONAI/torch are optional
(`pip install torch==2.13.0 monai`); without them only tfseg is measured.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from peak_memory import own_peak_rss_mb

CHILD = "--child"


def load_case(root):
    from tfseg.workflows.brats import normalize_case, read_case_image

    from tfseg.datasets.brats import find_brats

    case = find_brats(root)[0]
    image, _ = read_case_image(case)
    return normalize_case(image)


def run_tfseg(args, image, crop):
    import tensorflow as tf

    from tfseg.inference.sliding_window import count_windows, nonzero_box, predict_volume
    from tfseg.models import segresnet

    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    model = segresnet((None, None, None, 4), 3, init_filters=args.init_filters)
    roi = (args.roi,) * 3
    predict_volume(model, image[:args.roi, :args.roi, :args.roi], roi_size=roi)  # trace once, untimed
    start = time.perf_counter()
    out = predict_volume(model, image, roi_size=roi, overlap=args.overlap, window_batch_size=1,
                         crop_to_nonzero=crop)
    seconds = time.perf_counter() - start
    box = nonzero_box(image) if crop else tuple(slice(0, s) for s in image.shape[:-1])
    windows = count_windows(tuple(s.stop - s.start for s in box), args.roi, args.overlap)
    return {"seconds": seconds, "windows": windows, "params": int(model.count_params()),
            "output_shape": list(out.shape)}


def run_monai(args, image):
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SegResNet

    torch.set_num_threads(args.threads)
    net = SegResNet(spatial_dims=3, init_filters=args.init_filters, in_channels=4, out_channels=3,
                    blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1)).eval()
    volume = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)[None]))
    calls = []

    def predictor(x):
        calls.append(1)
        return torch.sigmoid(net(x))

    roi = (args.roi,) * 3
    with torch.no_grad():
        predictor(volume[..., :args.roi, :args.roi, :args.roi])  # warm-up, untimed
        calls.clear()
        start = time.perf_counter()
        out = sliding_window_inference(volume, roi, 1, predictor, overlap=args.overlap, mode="gaussian")
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "windows": len(calls), "params": sum(p.numel() for p in net.parameters()),
            "output_shape": list(out.shape)}


def child(args):
    image = np.load(args.image)
    if args.backend == "monai":
        result = run_monai(args, image)
    else:
        result = run_tfseg(args, image, crop=args.backend == "tfseg_crop")
    result["peak_rss_mb"] = own_peak_rss_mb()
    print(json.dumps(result))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init-filters", type=int, default=16)
    parser.add_argument("--roi", type=int, default=128)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument(CHILD, dest="backend", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend:
        return child(args)

    from tfseg.datasets.synthetic import write_brats

    results = {}
    with tempfile.TemporaryDirectory() as root:
        write_brats(os.path.join(root, "data"), num_cases=1, shape=(240, 240, 155), seed=0)
        image_path = os.path.join(root, "image.npy")
        np.save(image_path, load_case(os.path.join(root, "data")))
        backends = ["tfseg_full", "tfseg_crop"]
        try:
            import monai  # noqa: F401
            import torch  # noqa: F401

            backends.insert(0, "monai")
        except ImportError:
            print("MONAI/torch not installed: measuring tfseg only (pip install torch==2.13.0 monai)")
        for backend in backends:
            command = [sys.executable, __file__, CHILD, backend, "--image", image_path,
                       "--init-filters", str(args.init_filters), "--roi", str(args.roi),
                       "--overlap", str(args.overlap), "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{backend} failed")
            results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    reference = results.get("monai", {}).get("seconds")
    print(f"{'backend':<14}{'s/volume':>10}{'windows':>9}{'s/window':>10}{'params':>11}{'peak MB':>9}{'x MONAI':>9}")
    for name, r in results.items():
        ratio = f"{r['seconds'] / reference:.2f}" if reference else "-"
        print(f"{name:<14}{r['seconds']:>10.1f}{r['windows']:>9}{r['seconds'] / r['windows']:>10.2f}"
              f"{r['params']:>11,}{r['peak_rss_mb']:>9.0f}{ratio:>9}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(results, stream, indent=2)
    return results


if __name__ == "__main__":
    main()
