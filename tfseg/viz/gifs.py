"""Animated GIFs that step through slices: input | input + truth | input + prediction, side by side.

The input is a volume `(D, H, W)` or `(D, H, W, C)` (channels last, one channel shown in gray) with
label volumes of the same spatial shape, or a list of 2D samples `(H, W)` / `(H, W, C)` of one
size (e.g. the test slices of a 2D BraTS model) with a list of 2D label maps each. Labels are drawn
in the colours of `tfseg.viz.overlays.LABEL_COLOURS` (1 red, 2 green, 3 blue, 4 yellow; others
magenta) unless `labels_colours` says otherwise.

The gray window is the 0.5-99.5 percentile range of the whole volume (of each sample, for a list),
so the brightness does not flicker from frame to frame.

Example:
    >>> import numpy as np, os, tempfile
    >>> image = np.random.default_rng(0).random((6, 32, 32)).astype("float32")
    >>> truth = np.zeros((6, 32, 32), np.uint8); truth[2:4, 10:20, 10:20] = 1
    >>> path = write_slices_gif(os.path.join(tempfile.mkdtemp(), "case.gif"), image, truth, truth)
    >>> from PIL import Image
    >>> Image.open(path).n_frames
    6
"""
import logging
import os

import numpy as np

from tfseg.errors import ConfigError, DataError
from tfseg.utils.atomic import atomic_path
from tfseg.viz.overlays import LABEL_COLOURS, display_image, label_map, window

logger = logging.getLogger(__name__)

#: Colour of labels missing from the colour map (as in `tfseg.viz.overlays`).
OTHER_COLOUR = (1.0, 0.0, 1.0)
_GAP = 4             # pixels between panels
_TITLE_HEIGHT = 14   # pixels of the title strip


def _colour_table(labels_colours):
    """Label -> RGB in [0, 1]; colours given as 0-255 integers are scaled."""
    table = {}
    for label, colour in (LABEL_COLOURS if labels_colours is None else labels_colours).items():
        rgb = np.asarray(colour, np.float64)
        if rgb.shape != (3,) or np.any(rgb < 0) or np.any(rgb > 255):
            raise ConfigError(f"labels_colours[{label!r}] must be an RGB triple (0-1 or 0-255), got {colour!r}")
        table[int(label)] = rgb / 255.0 if np.any(rgb > 1) else rgb
    return table


def blend_labels(gray, labels, colours=None, alpha=0.45):
    """Draw a label map over a gray image.

    Args:
        gray: `(H, W)` image in [0, 1].
        labels: `(H, W)` integer label map; 0 is left uncoloured.
        colours: label -> RGB (0-1 or 0-255); default `LABEL_COLOURS`, other labels magenta.
        alpha: opacity of the labels.

    Returns:
        `(H, W, 3)` uint8 RGB image.

    Example:
        >>> rgb = blend_labels(np.zeros((2, 2)), np.array([[0, 1], [0, 0]]), alpha=1.0)
        >>> rgb[0, 1].tolist(), rgb[0, 0].tolist()
        ([255, 26, 26], [0, 0, 0])
    """
    rgb = np.repeat(np.asarray(gray, np.float64)[..., None], 3, axis=-1)
    if labels is not None:
        table = _colour_table(colours)
        labels = np.asarray(labels)
        for value in np.unique(labels):
            if value == 0:
                continue
            colour = table.get(int(value), OTHER_COLOUR)
            mask = labels == value
            rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _slices(image, truth, prediction, axis, channel, path):
    """Yield (index, total, gray slice in [0, 1], truth slice, prediction slice) per frame source."""
    if isinstance(image, (list, tuple)):
        count = len(image)
        if not count:
            raise DataError(path, "no samples to draw")
        for what, labels in (("truth", truth), ("prediction", prediction)):
            if labels is not None and len(labels) != count:
                raise DataError(path, f"{count} images but {len(labels)} {what} maps")
        shape = None
        for index, sample in enumerate(image):
            gray = display_image(sample, 2, channel, path)
            if shape is None:
                shape = gray.shape
            elif gray.shape != shape:
                raise DataError(path, f"sample {index} has shape {gray.shape}, sample 0 has {shape}; "
                                      f"GIF frames must share one size")
            yield (index, count, window(gray),
                   label_map(None if truth is None else truth[index], shape, f"truth {index}", path),
                   label_map(None if prediction is None else prediction[index], shape,
                                 f"prediction {index}", path))
        return
    volume = display_image(image, 3, channel, path)
    if axis not in (0, 1, 2, -1, -2, -3):
        raise ConfigError(f"axis must be a spatial axis 0, 1 or 2 of the (D, H, W) volume, got {axis!r}")
    truth = label_map(truth, volume.shape, "truth", path)
    prediction = label_map(prediction, volume.shape, "prediction", path)
    levels = window(volume)
    count = volume.shape[axis]
    for index in range(count):
        take = [slice(None)] * 3
        take[axis] = index
        take = tuple(take)
        yield (index, count, levels[take], None if truth is None else truth[take],
               None if prediction is None else prediction[take])


def _frame(gray, truth, prediction, colours, alpha, zoom, title):
    """One frame: the panels side by side, upscaled, with an optional title strip."""
    from PIL import Image, ImageDraw

    panels = [("input", blend_labels(gray, None))]
    if truth is not None:
        panels.append(("truth", blend_labels(gray, truth, colours, alpha)))
    if prediction is not None:
        panels.append(("prediction", blend_labels(gray, prediction, colours, alpha)))
    height, width = gray.shape
    height, width = height * zoom, width * zoom
    top = _TITLE_HEIGHT if title else 0
    canvas = np.full((top + height, len(panels) * width + (len(panels) - 1) * _GAP, 3), 32, np.uint8)
    for column, (_, rgb) in enumerate(panels):
        x = column * (width + _GAP)
        canvas[top:, x:x + width] = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
    image = Image.fromarray(canvas, "RGB")
    if title:
        draw = ImageDraw.Draw(image)
        for column, (name, _) in enumerate(panels):
            text = f"{name} {title}" if column == 0 else name
            draw.text((column * (width + _GAP) + 2, 1), text, fill=(255, 255, 255))
    return image


def write_slices_gif(path, image, truth=None, prediction=None, axis=0, fps=5, max_frames=None,
                     labels_colours=None, channel=0, alpha=0.45, zoom=1, titles=True):
    """Write an animated GIF stepping through the slices of a case (or through a list of 2D samples).

    Each frame shows the panels side by side: input in gray | input + truth | input + prediction
    (the label panels only when given), with an optional title strip naming the panels and the
    slice. The GIF loops forever.

    Args:
        path: GIF file to write (atomically; its folder is created).
        image: `(D, H, W)` or `(D, H, W, C)` volume, or a list of `(H, W)` / `(H, W, C)` samples
            of one size.
        truth: optional label map(s) matching `image`: a `(D, H, W)` volume or a list of `(H, W)`.
        prediction: optional predicted label map(s), the same way.
        axis: the volume axis to step along (0: axial slices of a `(D, H, W)` volume). Ignored for
            a list.
        fps: frames per second.
        max_frames: keep at most this many frames, evenly spaced over the slices (first and last
            included); default all.
        labels_colours: dict label -> RGB (0-1 floats or 0-255 integers); default
            `tfseg.viz.overlays.LABEL_COLOURS`; labels not in it are magenta.
        channel: channel shown when the image has a channel axis (e.g. 0 for the first modality).
        alpha: opacity of the labels.
        zoom: integer upscaling of every panel (nearest neighbour), for small slices.
        titles: draw the title strip ("input 12/155", "truth", "prediction"). Without it,
            identical consecutive frames (e.g. empty slices) are merged into one longer frame.

    Returns:
        `path`.

    Raises:
        DataError: shapes disagree, labels are not whole numbers, or the image is not finite.
        ConfigError: a bad `axis`, `fps`, `max_frames`, `zoom`, `channel` or colour.

    Example:
        >>> import numpy as np, os, tempfile
        >>> slices = [np.full((16, 16), float(i)) for i in range(4)]
        >>> masks = [np.eye(16, dtype=np.uint8) * 2 for _ in range(4)]
        >>> out = write_slices_gif(os.path.join(tempfile.mkdtemp(), "test.gif"), slices, truth=masks, titles=False)
        >>> from PIL import Image
        >>> Image.open(out).size                                  # two 16-pixel panels and a 4-pixel gap
        (36, 16)
    """
    from PIL import Image

    if not (isinstance(fps, (int, float)) and 0 < fps <= 100):
        raise ConfigError(f"fps must be a number in (0, 100], got {fps!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ConfigError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    if isinstance(zoom, bool) or not isinstance(zoom, int) or zoom < 1:
        raise ConfigError(f"zoom must be a positive integer, got {zoom!r}")
    colours = _colour_table(labels_colours)
    path = os.fspath(path)
    sources = _slices(image, truth, prediction, axis, channel, path)
    frames, keep = [], None
    for index, count, gray, truth_slice, prediction_slice in sources:
        if keep is None:
            keep = set(range(count)) if max_frames is None or max_frames >= count else \
                set(np.round(np.linspace(0, count - 1, max_frames)).astype(int).tolist())
        if index not in keep:
            continue
        title = f"{index + 1}/{count}" if titles else None
        frames.append(_frame(gray, truth_slice, prediction_slice, colours, alpha, zoom, title))
    if not frames:
        raise DataError(path, f"the image has no slices along axis {axis}")
    # Each frame gets its own 256-colour palette, so labels seen on a few slices keep their colour.
    frames = [frame.convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for frame in frames]
    with atomic_path(path) as temporary:
        frames[0].save(temporary, format="GIF", save_all=True, append_images=frames[1:],
                       duration=max(int(round(1000 / fps)), 20), loop=0, optimize=False)
    logger.info("wrote %d frames to %s", len(frames), path)
    return path
