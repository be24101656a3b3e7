"""The BraTS 3D recipe on data its own synthetic writer did not produce: MNI152-based cases.

Writes a BraTS-2021-layout dataset from nilearn's MNI152 template (`tfseg.datasets.synthetic_mni`:
another size and spacing than the synthetic default, tumours of varied size and position, nested
labels 1/2/4; `--hard`: small and sometimes two lesions, soft borders, jittered intensities,
stronger bias field and noise), runs `recipes/brats_segresnet_vae.py --data-dir DATA` on it with
nothing else chosen (sizes are planned from the data), and reports the whole-volume Dice of the
final evaluation next to the crop Dice logged for the same epoch, the logged best validation Dice
and the wall time.

    python benchmarks/bench_independent_brats.py --cases 12 --json benchmarks/results/independent_brats.json
    python benchmarks/bench_independent_brats.py --hard --cases 12 --json benchmarks/results/independent_brats_hard.json
"""
import argparse
import csv
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HARD = {"radius_mm": (10.0, 20.0), "max_lesions": 2, "soft_border": 1.0, "intensity_jitter": 0.25, "bias": 0.4,
        "noise": 0.08}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--hard", action="store_true", help="small lesions, soft borders, stronger artefacts")
    parser.add_argument("--spacing", type=float, nargs=3, default=(3.0, 2.75, 2.75), help="voxel size (z, y, x) mm")
    parser.add_argument("--work", default="runs/independent_brats", help="data and run folder")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("recipe_flags", nargs="*", help="extra recipe flags after --, e.g. -- --epochs 30")
    args = parser.parse_args(argv)

    from tfseg.datasets.synthetic_mni import write_mni_brats

    work = pathlib.Path(args.work) / ("hard" if args.hard else "default")
    data = work / "data"
    write_mni_brats(data, num_cases=args.cases, seed=1, spacing=tuple(args.spacing), **(HARD if args.hard else {}))
    sys.path.insert(0, str(ROOT / "recipes"))
    from brats_segresnet_vae import main as recipe_main

    out = work / "run"
    start = time.perf_counter()
    code = recipe_main(["--data-dir", str(data), "--output-dir", str(out), "--quiet", *args.recipe_flags])
    seconds = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    with open(out / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    best = rows[metrics["best_epoch"] - 1] if metrics.get("best_epoch") else rows[-1]
    result = {
        "exit_code": code, "hard": args.hard, "cases": args.cases, "spacing": list(args.spacing),
        "wall_seconds": round(seconds, 1), "train_seconds": metrics.get("train_seconds"),
        "planned_crop": config["data"]["crop_size"], "planned_batch": config["train"]["batch_size"],
        "planned_levels": len(config["model"]["blocks_down"]), "crops_per_case": config["data"]["crops_per_case"],
        "best_epoch": metrics.get("best_epoch"), "logged_best_val_dice": metrics.get("best_val_dice"),
        "whole_volume": {r: metrics.get(f"val_dice_{r}") for r in ("wt", "tc", "et")},
        "whole_volume_mean": metrics.get("val_dice"),
        "crop_at_best_epoch": {r: float(best.get(f"crop_val_dice_{r}", "nan")) for r in ("wt", "tc", "et")},
        "hd95": {r: metrics.get(f"val_hd95_{r}") for r in ("wt", "tc", "et")},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
