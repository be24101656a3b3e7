"""Label maps drawn over images: three orthogonal planes of a volume, or one 2D slice, as PNG.

Volumes are channels-last `(D, H, W)` in tfseg's memory layout (D = NIfTI k, H = j, W = i), so
the axial plane is `volume[k]`, the coronal plane `volume[:, j]` and the sagittal plane
`volume[:, :, i]`; coronal and sagittal views are drawn with the slice axis pointing up and with
the aspect ratio of the voxel spacing.

Example:
    >>> import numpy as np, tempfile, os
    >>> volume = np.random.rand(8, 16, 16).astype("float32")
    >>> labels = np.zeros((8, 16, 16), np.uint8); labels[3:5, 6:9, 6:9] = 2
    >>> path = three_plane_overlay(volume, os.path.join(tempfile.mkdtemp(), "case.png"), labels=labels)
    >>> os.path.getsize(path) > 0
    True
"""
import os

import numpy as np

from tfseg.utils.atomic import atomic_path

#: Colours of the BraTS labels (and of labels 1-3 of other tasks): red, green, yellow, blue.
LABEL_COLOURS = {1: (1.0, 0.1, 0.1), 2: (0.1, 0.9, 0.1), 3: (0.2, 0.4, 1.0), 4: (1.0, 0.9, 0.0)}


def _rgba(labels, alpha):
    out = np.zeros(labels.shape + (4,), np.float32)
    for value, colour in LABEL_COLOURS.items():
        out[labels == value] = (*colour, alpha)
    other = (labels > 0) & ~np.isin(labels, list(LABEL_COLOURS))
    out[other] = (1.0, 0.0, 1.0, alpha)
    return out


def _window(image):
    low, high = np.percentile(image, (0.5, 99.5)) if image.size else (0.0, 1.0)
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1)


def _centre(labels, shape):
    if labels is not None and np.any(labels > 0):
        return tuple(int(round(c)) for c in np.argwhere(labels > 0).mean(axis=0))
    return tuple(s // 2 for s in shape)


def three_plane_overlay(volume, path, labels=None, prediction=None, spacing=(1.0, 1.0, 1.0), centre=None,
                        title=None, alpha=0.45):
    """Save axial, coronal and sagittal views of `volume` with label maps drawn over it.

    Args:
        volume: `(D, H, W)` image, or `(D, H, W, C)` (the last channel is shown, e.g. FLAIR).
        path: PNG file to write (atomically).
        labels: optional `(D, H, W)` integer label map (the truth), drawn in the first row.
        prediction: optional `(D, H, W)` label map, drawn in a second row when given.
        spacing: voxel size `(dz, dy, dx)` in mm, for the aspect ratio of the views.
        centre: voxel `(k, j, i)` the planes go through; default: the centroid of the labels.
        title: figure title.
        alpha: opacity of the labels.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volume = np.asarray(volume, np.float32)
    if volume.ndim == 4:
        volume = volume[..., -1]
    if volume.ndim != 3:
        raise ValueError(f"volume must be (D, H, W) or (D, H, W, C), got shape {volume.shape}")
    rows = [("truth", labels)] if prediction is None else [("truth", labels), ("prediction", prediction)]
    k, j, i = centre if centre is not None else _centre(labels if labels is not None else prediction, volume.shape)
    dz, dy, dx = spacing
    image = _window(volume)
    planes = [("axial", lambda a: a[k], dy / dx, False), ("coronal", lambda a: a[:, j], dz / dx, True),
              ("sagittal", lambda a: a[:, :, i], dz / dy, True)]
    figure, axes = plt.subplots(len(rows), 3, figsize=(12, 4 * len(rows)), squeeze=False)
    for row, (name, label_map) in enumerate(rows):
        for column, (plane, take, aspect, flip_up) in enumerate(planes):
            axis = axes[row][column]
            origin = "lower" if flip_up else "upper"
            axis.imshow(take(image), cmap="gray", aspect=aspect, origin=origin, interpolation="nearest")
            if label_map is not None:
                axis.imshow(_rgba(take(np.asarray(label_map)), alpha), aspect=aspect, origin=origin,
                            interpolation="nearest")
            axis.set_title(f"{plane} ({name})")
            axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    plt.close(figure)
    return path
