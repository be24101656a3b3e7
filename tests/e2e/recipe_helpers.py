"""Helpers shared by the recipe end-to-end tests: load a recipe script, read its history, serve its SavedModel."""
import csv
import importlib.util
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_recipe(name):
    """Import `recipes/<name>.py` as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def history_epochs(output_dir):
    """The epoch column of `<output_dir>/history.csv`."""
    with open(pathlib.Path(output_dir) / "history.csv") as stream:
        return [int(row["epoch"]) for row in csv.DictReader(stream)]


def serve_in_fresh_process(saved_model, shape, scale=1.0):
    """Call the SavedModel's serving signature in a new Python process without tfseg; returns output shapes."""
    script = ("import sys, json, numpy as np, tensorflow as tf\n"
              "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
              f"x = np.random.default_rng(0).random({tuple(shape)!r}).astype('float32') * {scale!r}\n"
              "out = serve(image=tf.constant(x))\n"
              "assert 'tfseg' not in sys.modules\n"
              "print(json.dumps({k: list(v.shape) for k, v in out.items()}))\n")
    result = subprocess.run([sys.executable, "-c", script, str(saved_model)], check=True, capture_output=True,
                            text=True)
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_logged_best_matches_metrics(output_dir, key="val_dice"):
    """The best epoch's whole-image `key` in history.csv is the final metrics.json figure (within 0.01)."""
    import json
    import math

    metrics = json.loads((pathlib.Path(output_dir) / "metrics.json").read_text())
    with open(pathlib.Path(output_dir) / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    values = [float(row[key]) for row in rows]
    assert any(not math.isnan(v) for v in values), f"{key} was never measured"
    logged = values[metrics["best_epoch"] - 1]
    assert logged == max(v for v in values if not math.isnan(v))
    assert abs(logged - metrics[key]) <= 0.01, (logged, metrics[key])
    return metrics
