import numpy as np
import pytest
from PIL import Image, ImageSequence

from tfseg.errors import ConfigError, DataError
from tfseg.viz.gifs import blend_labels, write_slices_gif
from tfseg.viz.overlays import LABEL_COLOURS


def case(depth=5, size=24, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((depth, size, size, 2)).astype(np.float32)
    truth = np.zeros((depth, size, size), np.uint8)
    truth[1:4, 4:12, 4:12] = 1
    prediction = np.zeros_like(truth)
    prediction[1:4, 12:20, 12:20] = 2
    return image, truth, prediction


def frames_rgb(path):
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        loop = gif.info.get("loop")
        return [np.asarray(f.convert("RGB")).astype(int) for f in ImageSequence.Iterator(gif)], loop, gif.info


def near(pixel, colour, alpha=0.45, tol=60):
    """Whether an overlay pixel is closer to the label colour than to gray."""
    target = np.asarray(colour) * 255
    return np.abs(pixel - target).max() < 255 * (1 - alpha) + tol


def test_volume_gif_frames_panels_and_colours(tmp_path):
    image, truth, prediction = case()
    path = write_slices_gif(tmp_path / "out" / "case.gif", image, truth, prediction, fps=4, titles=False, zoom=2)
    frames, loop, info = frames_rgb(path)
    assert len(frames) == 5 and loop == 0 and info["duration"] == 250
    size = 24 * 2
    assert frames[0].shape == (size, 3 * size + 2 * 4, 3)
    frame = frames[2]                                   # slice 2 holds both labels
    truth_panel = frame[:, size + 4:2 * size + 4]
    pred_panel = frame[:, 2 * (size + 4):]
    red = truth_panel[16:24, 16:24].reshape(-1, 3)       # truth label 1 (zoomed x2: rows 8..23)
    assert np.all(red[:, 0] > red[:, 1] + 60)
    green = pred_panel[32:40, 32:40].reshape(-1, 3)      # prediction label 2
    assert np.all(green[:, 1] > green[:, 0] + 60)
    # the input panel is gray, and so are label panels away from the labels
    assert np.all(frame[:, :size].std(axis=-1) < 3)
    assert np.all(truth_panel[:8, :8].std(axis=-1) < 3)
    # slice 0 has no labels at all
    assert np.all(frames[0].std(axis=-1) < 3)


def test_axis_max_frames_and_titles(tmp_path):
    image, truth, _ = case(depth=6)
    path = write_slices_gif(tmp_path / "a.gif", image[..., 0], truth=truth, axis=2, max_frames=3)
    frames, _, _ = frames_rgb(path)
    assert len(frames) == 3
    assert frames[0].shape == (6 + 14, 2 * 24 + 4, 3)     # (D, H) panels, title strip on top
    assert (frames[0][:14] > 200).any()                    # white title text


def test_list_of_2d_samples_and_custom_colours(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.random((16, 20, 3)) for _ in range(3)]
    masks = [np.zeros((16, 20), int) for _ in range(3)]
    masks[1][4:10, 4:10] = 3
    path = write_slices_gif(tmp_path / "slices.gif", images, prediction=masks, labels_colours={3: (255, 0, 255)},
                            titles=False, alpha=0.8)
    frames, _, _ = frames_rgb(path)
    assert len(frames) == 3 and frames[1].shape == (16, 2 * 20 + 4, 3)
    patch = frames[1][4:10, 24 + 4:24 + 10].reshape(-1, 3)
    assert np.all(patch[:, 0] > 150) and np.all(patch[:, 2] > 150) and np.all(patch[:, 1] < 80)


def test_blend_labels_uses_overlay_colours():
    rgb = blend_labels(np.full((1, 5), 0.5), np.array([[0, 1, 2, 3, 7]]), alpha=1.0)
    expected = [(0.5, 0.5, 0.5), LABEL_COLOURS[1], LABEL_COLOURS[2], LABEL_COLOURS[3], (1.0, 0.0, 1.0)]
    assert rgb[0].tolist() == [[round(c * 255) for c in colour] for colour in expected]


def test_bad_inputs(tmp_path):
    image, truth, _ = case()
    out = tmp_path / "bad.gif"
    with pytest.raises(DataError, match=r"truth shape \(5, 24, 23\) differs"):
        write_slices_gif(out, image, truth[..., :23])
    with pytest.raises(DataError, match="whole numbers"):
        write_slices_gif(out, image, prediction=np.full(truth.shape, 0.3))
    with pytest.raises(DataError, match="sample 1 has shape"):
        write_slices_gif(out, [np.zeros((4, 4)), np.zeros((5, 4))])
    with pytest.raises(DataError, match="2 images but 1 truth"):
        write_slices_gif(out, [np.zeros((4, 4)), np.zeros((4, 4))], truth=[np.zeros((4, 4), int)])
    with pytest.raises(DataError, match=r"image must be \(D, H, W\)"):
        write_slices_gif(out, np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="axis"):
        write_slices_gif(out, image, axis=3)
    with pytest.raises(ConfigError, match="fps"):
        write_slices_gif(out, image, fps=0)
    with pytest.raises(ConfigError, match="channel"):
        write_slices_gif(out, image, channel=2)
    assert not out.exists() and list(tmp_path.iterdir()) == []
