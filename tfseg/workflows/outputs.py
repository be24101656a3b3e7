"""What every workflow run writes at the end: the model, its SavedModel, metrics and the resolved config.

Example:
    >>> headline_metrics({"val_dice_wt": 0.9, "val_dice_tc": 0.7}, ("WT", "TC"))["val_dice"]
    0.8
"""
import os

import numpy as np

from tfseg.training.config import to_dict


def write_run_outputs(config, model, spec, metrics, dist=None, serving_model=None):
    """Write `model.keras`, `saved_model/`, `metrics.json` and `config.json` (on the chief only).

    Args:
        config: the run's config dataclass (has `output_dir`).
        model: the trained Keras model (saved whole, with its optimizer).
        spec: the `ServingSpec` of the SavedModel.
        metrics: the JSON-serializable figures.
        dist: the run's distribution (None: single process).
        serving_model: the model to export for serving when it differs from `model`.
    """
    from tfseg.export.savedmodel import export_savedmodel
    from tfseg.utils.atomic import atomic_save_model, atomic_write_json

    if dist is not None and not dist.is_chief:
        return
    os.makedirs(config.output_dir, exist_ok=True)
    atomic_save_model(model, os.path.join(config.output_dir, "model.keras"))
    export_savedmodel(serving_model or model, os.path.join(config.output_dir, "saved_model"), spec)
    atomic_write_json(os.path.join(config.output_dir, "metrics.json"), metrics)
    atomic_write_json(os.path.join(config.output_dir, "config.json"), to_dict(config))


def headline_metrics(metrics, names, prefix="val", scores=("dice", "iou", "precision", "recall", "hd95")):
    """`metrics` with the shared vocabulary added: `<prefix>_<score>` = mean of `<prefix>_<score>_<name>`.

    Every workflow's `metrics.json` holds `val_dice` (the mean over its classes or regions) and
    `val_dice_<class>` for each, and the same for the other scores it computes; a score with no
    per-class value is left out, and an existing mean is kept.

    Args:
        metrics: the workflow's metrics dict (per-class keys already in it).
        names: the scored classes or regions (lower-cased in the keys).
        prefix: "val" (the held-out split, whatever the workflow calls it).
        scores: the score names to average.

    Returns:
        A new dict.
    """
    result = dict(metrics)
    for score in scores:
        values = [metrics.get(f"{prefix}_{score}_{name.lower()}") for name in names]
        values = [v for v in values if v is not None and np.isfinite(v)]
        if values and f"{prefix}_{score}" not in result:
            result[f"{prefix}_{score}"] = round(float(np.mean(values)), 6)
    return result


def use_best_epoch(model, history, output_dir, monitor="val_dice", mode="max"):
    """Load the best validated weights into `model` and say which epoch they are.

    After this, the evaluation, `model.keras` and the SavedModel are the model of the epoch whose
    `monitor` was best in `history.csv` (computed by the same inference path), so the logged
    figure and the final `metrics.json` agree.

    Args:
        model: the trained model (its weights are replaced by `<output_dir>/best.keras`'s).
        history: the trainer's history `{key: [value per epoch]}`.
        output_dir: the run folder.
        monitor, mode: the key and direction that picked `best.keras`.

    Returns:
        `{"best_epoch": n, "best_<monitor>": value}` (1-based epoch), or `{}` when nothing was
        validated (then the last epoch's weights stay).

    Example:
        >>> use_best_epoch(None, {"val_dice": [float("nan")]}, "/nonexistent-run")
        {}
    """
    from tfseg.training.validation import restore_best

    values = np.asarray(history.get(monitor, []), dtype=np.float64)
    if not values.size or np.all(np.isnan(values)):
        return {}
    index = int(np.nanargmax(values) if mode == "max" else np.nanargmin(values))
    if restore_best(model, output_dir) is None:
        return {}
    return {"best_epoch": index + 1, f"best_{monitor}": round(float(values[index]), 6)}
