"""Training and inference sizes derived from a dataset fingerprint and a memory budget.

`suggest_settings(fingerprint, memory_budget_bytes, ...)` picks the crop (patch) size, batch size,
number of network levels, steps per epoch and inference window, and says why for each, the way
nnU-Net plans from its dataset fingerprint. The numbers come from a deliberately simple memory
model:

    training bytes  ~= TRAIN_BYTES_PER_VOXEL_FILTER     * batch * crop voxels   * init_filters
    inference bytes ~= INFERENCE_BYTES_PER_VOXEL_FILTER *         window voxels * init_filters

i.e. activations per voxel times a factor per filter count of the first level (a SegResNet or
U-Net doubles its filters as it halves the resolution, so the full-resolution level dominates and
the total is proportional to voxels x initial filters). The two constants are the largest values
measured on a CPU (TensorFlow 2.21, float32) for a tfseg SegResNet, as the growth of the process's
peak resident memory over one step, by ``benchmarks/bench_memory_model.py``
(``benchmarks/results/memory_model.json``):

    ============  ==========  =====================  ===================
    network       size        train (B/voxel/filter)  inference
    ============  ==========  =====================  ===================
    3D, f=8, 4ch  32^3        292                     126
    3D, f=8, 4ch  48^3        333                     131
    3D, f=8, 4ch  64^3        345                     125
    2D, f=16, 1ch 128^2       338                     177
    2D, f=16, 1ch 256^2       320                     174
    ============  ==========  =====================  ===================

Mixed precision on a GPU roughly halves both; the model stays on the safe side there.

Example:
    >>> fp = {"spatial_dims": 3, "num_items": 40, "shape": {"median": [155, 240, 240], "max": [155, 240, 240]},
    ...       "label_bbox": {"median": [40, 60, 55]}, "nonzero_bbox": {"median": [140, 170, 140]}, "splits": {}}
    >>> s = suggest_settings(fp, memory_budget_bytes=8 * 2**30, init_filters=16)
    >>> s.crop, s.batch_size, s.levels
    ((80, 96, 96), 2, 4)
    >>> s.inference_window, s.whole_volume        # the whole 160x240x240 would need 25 GiB
    ((136, 144, 144), False)
"""
import dataclasses
import math

import numpy as np

from tfseg.errors import ConfigError

#: Bytes per voxel per initial filter of one training step (forward + backward), measured.
TRAIN_BYTES_PER_VOXEL_FILTER = 350
#: Bytes per voxel per initial filter of one forward pass, measured.
INFERENCE_BYTES_PER_VOXEL_FILTER = 180


@dataclasses.dataclass(frozen=True)
class Settings:
    """What `suggest_settings` chose, and why.

    Attributes:
        crop: training crop (patch) size per spatial axis, memory order, multiples of `stride`.
        batch_size: crops per step.
        levels: resolution levels of the network (`levels - 1` halvings); the bottom level is
            at least `min_bottom` voxels per axis.
        stride: the network's total downsampling the sizes are multiples of (`2 ** (max_levels - 1)`).
        steps_per_epoch: optimizer steps per epoch.
        inference_window: sliding-window size, or the whole (padded) volume when `whole_volume`.
        whole_volume: the largest volume fits in one window.
        train_bytes, inference_bytes: the memory model's estimates for the choices.
        why: choice name -> a sentence with the numbers behind it.
    """

    crop: tuple
    batch_size: int
    levels: int
    stride: int
    steps_per_epoch: int
    inference_window: tuple
    whole_volume: bool
    train_bytes: int
    inference_bytes: int
    why: dict

    def describe(self):
        """The reasons as lines `name: value (why)`, for a run's log."""
        values = {"crop": self.crop, "batch_size": self.batch_size, "levels": self.levels,
                  "steps_per_epoch": self.steps_per_epoch, "inference_window": self.inference_window}
        return "\n".join(f"{name}: {values[name]} ({self.why[name]})" for name in values)


def training_bytes(crop, batch_size, init_filters, channels=1):
    """Memory model of one training step (see the module docstring), in bytes."""
    voxels = int(np.prod(crop))
    return int(batch_size * voxels * (TRAIN_BYTES_PER_VOXEL_FILTER * init_filters + 8 * channels))


def inference_bytes(window, init_filters, channels=1):
    """Memory model of one forward pass over a window, in bytes."""
    voxels = int(np.prod(window))
    return int(voxels * (INFERENCE_BYTES_PER_VOXEL_FILTER * init_filters + 8 * channels))


def _round_up(values, stride):
    return tuple(int(max(stride, math.ceil(v / stride) * stride)) for v in values)


def _get(fingerprint, key):
    if isinstance(fingerprint, dict):
        return fingerprint.get(key)
    return getattr(fingerprint, key)


def _shrink(size, floor, stride, fits):
    """Reduce the largest axis (above its floor) by `stride` until `fits(size)` or all are at the floor."""
    size = list(size)
    while not fits(tuple(size)):
        candidates = [a for a in range(len(size)) if size[a] - stride >= max(floor[a], stride)]
        if not candidates:
            return tuple(size), False
        axis = max(candidates, key=lambda a: (size[a] - floor[a], size[a]))
        size[axis] -= stride
    return tuple(size), True


def _mb(value):
    return f"{value / 2**20:.0f} MiB"


def suggest_settings(fingerprint, memory_budget_bytes, spatial_dims=None, channels=1, init_filters=16, max_levels=4,
                     min_bottom=4, max_batch=None, train_items=None, min_steps=10, max_steps=250):
    """Choose crop, batch, network levels, steps per epoch and inference window from a fingerprint.

    Rules:

    - the crop aims at the median non-zero (e.g. brain) box, else the median image, rounded up to
      the stride and no larger than the median image rounded up; while the memory model says the
      step does not fit, the largest axis shrinks by one stride, first down to the median label
      box (so a crop still covers the typical tumour), and below it only when nothing else fits;
    - batch: 3D, 2 crops (1 when two do not fit even at the label box); 2D, as many as fit up
      to `max_batch` (16 by default);
    - levels: as many as `max_levels` while the smallest crop axis, halved `levels - 1` times, keeps
      at least `min_bottom` voxels;
    - steps per epoch: enough crops to cover each training item's non-zero box once,
      `ceil(items * max(1, box voxels / crop voxels) / batch)`, within `[min_steps, max_steps]`;
    - inference window: the largest volume (rounded up to the stride) when its forward pass fits,
      otherwise that volume shrunk axis by axis until it fits, never below the crop.

    Args:
        fingerprint: a `tfseg.datasets.fingerprint.Fingerprint` or its `to_dict()`.
        memory_budget_bytes: memory available to one training step / one forward pass.
        spatial_dims: 2 or 3; default the fingerprint's.
        channels: input channels.
        init_filters: filters of the network's first level.
        max_levels: the most resolution levels wanted; the stride is `2 ** (max_levels - 1)`.
        min_bottom: the fewest voxels per axis at the lowest level.
        max_batch: the largest batch (default 2 for 3D, 16 for 2D).
        train_items: training items per epoch; default the datalist's ``training`` count, else all.
        min_steps, max_steps: bounds of the steps per epoch.

    Returns:
        A `Settings`.

    Raises:
        ConfigError: a bad budget or argument, or a fingerprint without shapes.
    """
    if not isinstance(memory_budget_bytes, (int, float)) or memory_budget_bytes <= 0:
        raise ConfigError(f"memory_budget_bytes must be a positive number, got {memory_budget_bytes!r}")
    if isinstance(max_levels, bool) or not isinstance(max_levels, int) or not 1 <= max_levels <= 8:
        raise ConfigError(f"max_levels must be an integer from 1 to 8, got {max_levels!r}")
    spatial_dims = spatial_dims or _get(fingerprint, "spatial_dims")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    shape = _get(fingerprint, "shape") or {}
    if not shape.get("median"):
        raise ConfigError("the fingerprint has no shapes")
    median_shape, max_shape = shape["median"][-spatial_dims:], shape["max"][-spatial_dims:]
    stride = 2 ** (max_levels - 1)
    label_box = (_get(fingerprint, "label_bbox") or {}).get("median")
    nonzero_box = (_get(fingerprint, "nonzero_bbox") or {}).get("median")
    ceiling = _round_up(median_shape, stride)
    target = tuple(min(c, t) for c, t in zip(ceiling, _round_up(nonzero_box or median_shape, stride)))
    need = (tuple(min(c, n) for c, n in zip(target, _round_up(label_box, stride))) if label_box
            else (stride,) * spatial_dims)
    if max_batch is None:
        max_batch = 2 if spatial_dims == 3 else 16
    why = {}

    def fits_with(batch):
        return lambda size: training_bytes(size, batch, init_filters, channels) <= memory_budget_bytes

    batch = 2 if spatial_dims == 3 else 1
    batch = min(batch, max_batch)
    crop, covered = _shrink(target, need, stride, fits_with(batch))
    if not covered and batch > 1:
        batch = 1
        crop, covered = _shrink(target, need, stride, fits_with(batch))
    if not covered:
        crop, ok = _shrink(crop, (stride,) * spatial_dims, stride, fits_with(batch))
        if not ok:
            raise ConfigError(f"even a crop of {crop} with batch 1 needs "
                              f"{_mb(training_bytes(crop, 1, init_filters, channels))} by the memory model, over the "
                              f"budget of {_mb(memory_budget_bytes)}; lower init_filters or max_levels")
    while spatial_dims == 2 and batch < max_batch and fits_with(batch + 1)(crop):
        batch += 1
    source = "median non-zero box" if nonzero_box else "median image"
    if crop == target:
        why["crop"] = f"the {source} {tuple(nonzero_box or median_shape)} rounded up to the stride {stride} fits"
    else:
        why["crop"] = (f"the {source} rounded to {target} needs "
                       f"{_mb(training_bytes(target, batch, init_filters, channels))} at batch {batch}, "
                       f"over the budget "
                       f"{_mb(memory_budget_bytes)}; shrunk to fit")
    if label_box:
        covers = all(c >= b for c, b in zip(crop, label_box))
        why["crop"] += (f"; covers the median label box {tuple(label_box)}" if covers else
                        f"; smaller than the median label box {tuple(label_box)}: the budget allows no more")
    why["batch_size"] = (f"{batch} crop(s) of {crop} need {_mb(training_bytes(crop, batch, init_filters, channels))} "
                         f"of {_mb(memory_budget_bytes)} ({TRAIN_BYTES_PER_VOXEL_FILTER} B per voxel per initial "
                         f"filter, {init_filters} filters)")
    levels = max(1, min(max_levels, 1 + math.floor(math.log2(max(min(crop) / min_bottom, 1)))))
    why["levels"] = (f"the smallest crop axis {min(crop)} halved {levels - 1} time(s) keeps >= {min_bottom} voxels"
                     + ("" if levels == max_levels else f" (fewer than the {max_levels} wanted)"))
    splits = _get(fingerprint, "splits") or {}
    items = train_items or splits.get("training") or _get(fingerprint, "num_items")
    covered_box = nonzero_box or median_shape
    per_item = max(1.0, float(np.prod(covered_box)) / float(np.prod(crop)))
    steps = int(min(max_steps, max(min_steps, math.ceil(items * per_item / batch))))
    why["steps_per_epoch"] = (f"{items} training item(s) x {per_item:.1f} crop(s) to cover the {source} / batch "
                              f"{batch}, within [{min_steps}, {max_steps}]")
    whole = _round_up(max_shape, stride)
    infer_fits = lambda size: inference_bytes(size, init_filters, channels) <= memory_budget_bytes
    window, whole_volume = whole, infer_fits(whole)
    if whole_volume:
        why["inference_window"] = (f"the whole largest volume {tuple(max_shape)} (padded to {whole}) needs "
                                   f"{_mb(inference_bytes(whole, init_filters, channels))} for one forward pass: fits")
    else:
        window, _ = _shrink(whole, crop, stride, infer_fits)
        why["inference_window"] = (f"the whole volume {whole} needs "
                                   f"{_mb(inference_bytes(whole, init_filters, channels))}, over the budget; the "
                                   f"largest window that fits is {window} (never below the crop)")
    return Settings(crop=tuple(crop), batch_size=batch, levels=levels, stride=stride, steps_per_epoch=steps,
                    inference_window=tuple(window), whole_volume=bool(whole_volume),
                    train_bytes=training_bytes(crop, batch, init_filters, channels),
                    inference_bytes=inference_bytes(window, init_filters, channels), why=why)
