"""Polygon rasterization throughput: tfseg `polygon_to_mask` against scikit-image and OpenCV.

Generates `--n` left-ventricle-like contours (seeded: 60-150 float vertices, radius 8-25 px at
256x256, scaled with `--size`, smooth radial wobble plus noise), rasterizes each one with

- tfseg.io.contours.polygon_to_mask(points, shape),
- skimage.draw.polygon2mask(shape, points[:, ::-1]) (the same pixel rule, per-pixel test),
- cv2.fillPoly as it is typically used: vertices rounded to integers, np.int32(np.round(points)),
  which moves every vertex by up to half a pixel. cv2 also fills the pixels its outline passes
  through, so its masks are biased larger than the centre-in-polygon masks, by about half the
  perimeter in pixels (the dA column shows the bias). A second row uses cv2's sub-pixel
  `shift=8` argument: the vertices are no longer rounded, the outline bias stays.

and reports masks per second (best of `--repeat` timed passes over all contours), the speed ratio
of tfseg to each peer, the mean |area difference| in pixels against tfseg, the mean number of
pixels that differ, and how many masks are identical to tfseg's.

Usage:
    python benchmarks/bench_contours.py [--n 2000] [--size 256] [--repeat 3] [--json PATH]
"""
import argparse
import json
import platform
import sys
import time

import numpy as np
import skimage
from skimage.draw import polygon2mask

from tfseg.io.contours import polygon_to_mask


def lv_like_polygons(n, size, seed=0):
    """`n` closed float contours shaped like left-ventricle cross-sections on a size^2 image."""
    rng = np.random.default_rng(seed)
    scale = size / 256.0
    polygons = []
    for _ in range(n):
        n_vertices = int(rng.integers(60, 151))
        radius = rng.uniform(8.0, 25.0) * scale
        centre = rng.uniform(0.3 * size, 0.7 * size, 2)
        angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, n_vertices))
        wobble = (0.12 * np.sin(2 * angles + rng.uniform(0, 2 * np.pi))
                  + 0.06 * np.sin(3 * angles + rng.uniform(0, 2 * np.pi)))
        r = radius * (1.0 + wobble + rng.normal(0.0, 0.02, n_vertices))
        polygons.append(np.c_[centre[0] + r * np.cos(angles), centre[1] + r * np.sin(angles)])
    return polygons


def _best_time(function, polygons, repeat):
    """Best wall time of `repeat` passes of `function` over all polygons.

    Masks are dropped as they are made (as a data pipeline would), so the timing does not include
    the cost of holding thousands of fresh masks in memory.
    """
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for points in polygons:
            function(points)
        best = min(best, time.perf_counter() - start)
    return best


def run(n=2000, size=256, repeat=3, seed=0):
    """Time every method on the same contours; returns a dict of figures per method."""
    polygons = lv_like_polygons(n, size, seed)
    shape = (size, size)
    methods = {
        "tfseg polygon_to_mask": lambda p: polygon_to_mask(p, shape),
        "skimage polygon2mask": lambda p: polygon2mask(shape, p[:, ::-1]),
    }
    notes = {}
    try:
        import cv2  # optional peer, imported only here
    except ImportError:
        cv2 = None
        notes["cv2"] = "opencv-python-headless not installed: cv2 rows skipped"
    if cv2 is not None:
        def cv2_rounded(p):
            return cv2.fillPoly(np.zeros(shape, np.uint8), [np.int32(np.round(p))], 1).view(bool)

        def cv2_subpixel(p, shift=8):
            fixed = np.int32(np.round(p * (1 << shift)))
            return cv2.fillPoly(np.zeros(shape, np.uint8), [fixed], 1, shift=shift).view(bool)

        methods["cv2 fillPoly (rounded)"] = cv2_rounded
        methods["cv2 fillPoly (shift=8)"] = cv2_subpixel
    results = {}
    for name, function in methods.items():
        seconds = _best_time(function, polygons, repeat)
        results[name] = {"seconds": seconds, "masks_per_s": n / seconds}
    # Agreement, in a separate untimed pass: every peer against tfseg, contour by contour.
    areas = {name: np.zeros(n, np.int64) for name in methods}
    differing = {name: np.zeros(n, np.int64) for name in methods}
    for k, points in enumerate(polygons):
        reference = methods["tfseg polygon_to_mask"](points)
        for name, function in methods.items():
            mask = function(points)
            areas[name][k] = mask.sum()
            differing[name][k] = np.count_nonzero(mask != reference)
    ref_areas = areas["tfseg polygon_to_mask"]
    for name, entry in results.items():
        entry["mean_area_px"] = float(areas[name].mean())
        if name != "tfseg polygon_to_mask":
            entry["mean_abs_area_diff_px"] = float(np.abs(areas[name] - ref_areas).mean())
            entry["mean_area_diff_px"] = float((areas[name] - ref_areas).mean())
            entry["mean_differing_px"] = float(differing[name].mean())
            entry["identical_masks"] = int(np.count_nonzero(differing[name] == 0))
    tfseg_rate = results["tfseg polygon_to_mask"]["masks_per_s"]
    for name, entry in results.items():
        entry["tfseg_speedup"] = tfseg_rate / entry["masks_per_s"]
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "scikit-image": skimage.__version__, "machine": platform.machine()}
    if cv2 is not None:
        versions["opencv"] = cv2.__version__
    return {"n": n, "size": size, "repeat": repeat, "seed": seed, "versions": versions,
            "notes": notes, "results": results}


def format_table(report):
    """The figures as a small text table."""
    lines = [f"{report['n']} LV-like contours (60-150 vertices, radius 8-25 px at 256), "
             f"{report['size']}x{report['size']} masks, best of {report['repeat']} passes",
             "  ".join(f"{k} {v}" for k, v in report["versions"].items()),
             "",
             f"{'method':<24}{'masks/s':>10}{'tfseg x':>9}{'mean area':>11}{'|dA| px':>9}"
             f"{'dA px':>8}{'diff px':>9}{'identical':>11}"]
    for name, e in report["results"].items():
        if "mean_abs_area_diff_px" in e:
            tail = (f"{e['mean_abs_area_diff_px']:>9.2f}{e['mean_area_diff_px']:>+8.2f}"
                    f"{e['mean_differing_px']:>9.2f}{e['identical_masks']:>6d}/{report['n']:<4d}")
        else:
            tail = f"{'(reference)':>37}"
        lines.append(f"{name:<24}{e['masks_per_s']:>10.0f}{e['tfseg_speedup']:>9.2f}"
                     f"{e['mean_area_px']:>11.1f}{tail}")
    lines.append("")
    lines.append("tfseg x: how many times faster tfseg is than the method. |dA|, dA: mean "
                 "absolute and signed area difference vs tfseg;")
    lines.append("diff px: mean number of pixels that differ from tfseg's mask.")
    lines.extend(report["notes"].values())
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of contours (default 2000)")
    parser.add_argument("--size", type=int, default=256, help="mask height and width (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes, best kept (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 16 or args.repeat < 1:
        parser.error("--n and --repeat must be >= 1 and --size >= 16")
    report = run(args.n, args.size, args.repeat, args.seed)
    print(format_table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
