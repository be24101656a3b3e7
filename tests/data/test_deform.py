"""Tests of tfseg.data.transforms.deform (affine, anisotropy, elastic) and spatial.pad_or_crop."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.transforms import deform
from tfseg.data.transforms.spatial import pad_or_crop, rotate
from tfseg.errors import ConfigError

THRESHOLDS = (0.25, 0.5, 0.75)
SIZE = 96
MARGIN = 6


def blob_pair(size=SIZE, seed=0, sigma=12.0):
    """A smooth 2-channel image of Gaussian blobs and the 4-class label derived from its first channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    image = np.zeros((size, size))
    for _ in range(6):
        cy, cx = rng.uniform(size * 0.25, size * 0.75, 2)
        image += rng.uniform(0.5, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    image /= image.max()
    label = np.digitize(image, THRESHOLDS).astype(np.int32)
    two = np.stack([image, 2.0 * image], -1).astype(np.float32)
    return tf.constant(two), tf.constant(label)


def agreement(image, label, margin=MARGIN):
    """Fraction of interior pixels where the label equals the thresholded image."""
    expected = np.digitize(np.asarray(image)[..., 0], THRESHOLDS)
    inner = (slice(margin, -margin), slice(margin, -margin))
    return float(np.mean(expected[inner] == np.asarray(label)[inner]))


def check_aligned(image, label, out_image, out_label, minimum=0.975):
    out_image, out_label = out_image.numpy(), out_label.numpy()
    assert out_image.shape == tuple(image.shape) and out_label.shape == tuple(label.shape)
    assert out_image.dtype == np.float32 and out_label.dtype == label.dtype.as_numpy_dtype
    assert set(np.unique(out_label)) <= {0, 1, 2, 3}
    assert np.mean(out_label != label.numpy()) > 0.01, "the transform did not move anything"
    assert agreement(out_image, out_label) >= minimum
    # the second channel went through the same geometry as the first
    np.testing.assert_allclose(out_image[..., 1], 2.0 * out_image[..., 0], rtol=1e-5, atol=1e-5)


# ---- pad_or_crop ----

def test_pad_or_crop_centres_and_pads_with_zeros():
    image = np.arange(5 * 6, dtype=np.float32).reshape(5, 6, 1)
    label = (image[..., 0] > 10).astype(np.int32)
    img, lab = pad_or_crop(image, label, (8, 3))
    expected = np.zeros((8, 3), np.float32)
    expected[1:6] = image[:, 1:4, 0]  # pad 3 rows: 1 before, 2 after; crop 3 columns: start 1
    np.testing.assert_array_equal(img[..., 0].numpy(), expected)
    np.testing.assert_array_equal(lab.numpy(), (expected > 10).astype(np.int32))
    assert lab.dtype == tf.int32
    same, _ = pad_or_crop(image, None, (5, 6))
    np.testing.assert_array_equal(same.numpy(), image)


def test_pad_or_crop_gives_static_shapes_from_dynamic_input():
    spec = (tf.TensorSpec((None, None, 3), tf.float32), tf.TensorSpec((None, None), tf.int32))
    fn = tf.function(lambda i, l: pad_or_crop(i, l, 32), input_signature=spec)
    out_image, out_label = fn.get_concrete_function().structured_outputs
    assert out_image.shape.as_list() == [32, 32, 3] and out_label.shape.as_list() == [32, 32]
    with pytest.raises(ConfigError, match="size"):
        pad_or_crop(tf.zeros((4, 4, 1)), None, (0, 4))


# ---- affine ----

def test_affine_identity_gives_the_input_back():
    image, label = blob_pair()
    img, lab = deform.affine(image, label, 0.0)
    np.testing.assert_allclose(img.numpy(), image.numpy(), atol=1e-6)
    np.testing.assert_array_equal(lab.numpy(), label.numpy())


def test_affine_integer_translation_shifts_down_and_right():
    image, label = blob_pair()
    img, lab = deform.affine(image, label, 0.0, translation=(3, -2))
    expected = np.zeros_like(image.numpy())
    expected[3:, :-2] = image.numpy()[:-3, 2:]
    np.testing.assert_allclose(img.numpy(), expected, atol=1e-5)
    expected_label = np.zeros_like(label.numpy())
    expected_label[3:, :-2] = label.numpy()[:-3, 2:]
    np.testing.assert_array_equal(lab.numpy(), expected_label)


def test_affine_quarter_turn_matches_rot90_and_spatial_rotate():
    image, label = blob_pair(size=32)
    img, lab = deform.affine(image, label, 90.0)
    np.testing.assert_allclose(img.numpy(), np.rot90(image.numpy(), k=-1), atol=1e-4)
    np.testing.assert_array_equal(lab.numpy(), np.rot90(label.numpy(), k=-1))
    angle = 17.0
    img, _ = deform.affine(image, None, angle)
    np.testing.assert_allclose(img.numpy(), rotate(image, angle * math.pi / 180.0).numpy(), atol=1e-4)


def test_affine_zoom_about_the_centre():
    image = np.zeros((9, 9, 1), np.float32)
    image[3:6, 3:6] = 1.0  # a 3x3 square around the centre pixel (4, 4)
    img, lab = deform.affine(image, image[..., 0].astype(np.int32), 0.0, scale=3.0)
    # output pixel p samples the input at 4 + (p - 4) / 3: rows/columns 1..7 fall in the square,
    # row 0 samples 2.667, two thirds of the way from 0 to 1
    np.testing.assert_allclose(img.numpy()[1:8, 1:8, 0], 1.0, atol=1e-5)
    assert img.numpy()[0, 4, 0] == pytest.approx(2.0 / 3.0, abs=1e-4)
    assert np.all(lab.numpy() == 1)
    img, _ = deform.affine(image, None, 0.0, scale=(1.0, 3.0))  # stretched along W only
    np.testing.assert_allclose(img.numpy()[3:6, 1:8, 0], 1.0, atol=1e-5)
    assert np.all(img.numpy()[[0, 1, 2, 6, 7, 8], :, 0] == 0.0)


@pytest.mark.parametrize("params", [
    dict(angle=17.0), dict(angle=-25.0, scale=(1.1, 0.9)), dict(angle=5.0, translation=(3.5, -2.25), shear=8.0)])
def test_affine_keeps_image_and_label_aligned(params):
    image, label = blob_pair(seed=1)
    out_image, out_label = deform.affine(image, label, **params)
    check_aligned(image, label, out_image, out_label)
    # the measure catches a label that is one pixel off
    assert agreement(out_image.numpy(), np.roll(out_label.numpy(), 1, axis=0)) < 0.965


def test_random_affine_is_seeded_and_aligned():
    image, label = blob_pair(seed=2)
    a = deform.random_affine(image, label, (1, 2))
    b = deform.random_affine(image, label, (1, 2))
    c = deform.random_affine(image, label, (1, 3))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.allclose(a[0].numpy(), c[0].numpy())
    check_aligned(image, label, *a)
    angles = [float(deform.affine_parameters((s, 0), degrees=20)[0]) for s in range(20)]
    zooms = np.array([deform.affine_parameters((s, 0), scale=(0.9, 1.1))[1].numpy() for s in range(20)])
    assert max(abs(a) for a in angles) <= 20 and max(angles) > 5 and min(angles) < -5
    assert zooms.min() >= 0.9 and zooms.max() <= 1.1 and not np.allclose(zooms[:, 0], zooms[:, 1])
    with pytest.raises(ConfigError, match="scale"):
        deform.random_affine(image, label, (1, 2), scale=(0.0, 1.1))


# ---- anisotropy ----

def test_anisotropy_leaves_label_untouched_and_acts_along_one_axis():
    image, label = blob_pair(seed=3)
    img, lab = deform.anisotropy(image, label, 1.0, 0)
    np.testing.assert_allclose(img.numpy(), image.numpy(), atol=1e-6)
    ramp = np.tile(np.linspace(0.0, 1.0, SIZE, dtype=np.float32)[None, :, None], (SIZE, 1, 1))
    along_h, _ = deform.anisotropy(ramp, None, 2.5, 0)  # constant along H: nothing to lose
    np.testing.assert_allclose(along_h.numpy(), ramp, atol=1e-6)
    along_w, _ = deform.anisotropy(ramp, None, 2.5, 1)
    assert np.abs(along_w.numpy() - ramp).max() > 0.01
    np.testing.assert_allclose(along_w.numpy()[0], along_w.numpy()[-1])  # still constant along H
    img, lab = deform.anisotropy(image, label, 2.0, 1)
    assert lab is label
    assert np.abs(img.numpy() - image.numpy()).max() > 0.01
    assert agreement(img.numpy(), lab.numpy()) >= 0.97  # thick slices move the edges a little


def test_anisotropy_nearest_downsampling_by_two_hand_checked():
    row = np.array([0.0, 4.0, 8.0, 12.0, 16.0, 20.0], np.float32)[None, :, None]
    img, _ = deform.anisotropy(row, None, 2.0, 1)
    # kept samples 4, 12, 20 (nearest, half-pixel centres), linearly upsampled back to 6 pixels
    np.testing.assert_allclose(img.numpy()[0, :, 0], [4.0, 6.0, 10.0, 14.0, 18.0, 20.0], atol=1e-5)


def test_random_anisotropy_is_seeded():
    image, label = blob_pair(seed=4)
    a, _ = deform.random_anisotropy(image, label, (5, 6))
    b, _ = deform.random_anisotropy(image, label, (5, 6))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    outputs = [deform.random_anisotropy(image, label, (5, s))[0].numpy() for s in range(7, 11)]
    assert any(not np.allclose(outputs[0], o) for o in outputs[1:])
    params = [deform.anisotropy_parameters((s, 1)) for s in range(30)]
    factors = [float(f) for f, _ in params]
    assert min(factors) >= 1.5 and max(factors) <= 2.5
    assert {int(a) for _, a in params} == {0, 1}
    with pytest.raises(ConfigError):
        deform.anisotropy_parameters((1, 1), downsampling=(0.5, 2.0))


# ---- elastic ----

def test_elastic_zero_and_integer_fields():
    image, label = blob_pair(seed=5)
    zero = tf.zeros((SIZE, SIZE, 2))
    img, lab = deform.elastic(image, label, zero)
    np.testing.assert_array_equal(img.numpy(), image.numpy())
    np.testing.assert_array_equal(lab.numpy(), label.numpy())
    field = tf.concat([tf.fill((SIZE, SIZE, 1), 2.0), tf.fill((SIZE, SIZE, 1), -1.0)], -1)
    img, lab = deform.elastic(image, label, field)  # out[i, j] = in[i + 2, j - 1]
    expected = np.zeros_like(image.numpy())
    expected[:-2, 1:] = image.numpy()[2:, :-1]
    np.testing.assert_allclose(img.numpy(), expected, atol=1e-6)
    assert np.array_equal(lab.numpy()[:-2, 1:], label.numpy()[2:, :-1]) and np.all(lab.numpy()[-2:] == 0)


def test_elastic_bilinear_and_nearest_hand_checked():
    image = np.array([[0.0, 10.0], [20.0, 30.0]], np.float32)[..., None]
    label = np.array([[0, 1], [2, 3]], np.int32)
    field = np.zeros((2, 2, 2), np.float32)
    field[0, 0] = (0.25, 0.5)  # samples (0.25, 0.5)
    field[1, 1] = (-0.6, -0.4)  # samples (0.4, 0.6)
    img, lab = deform.elastic(image, label, field)
    assert img.numpy()[0, 0, 0] == pytest.approx(0.75 * 5.0 + 0.25 * 25.0)
    assert img.numpy()[1, 1, 0] == pytest.approx(0.6 * 6.0 + 0.4 * 26.0)
    assert lab.numpy()[0, 0] == 1 and lab.numpy()[1, 1] == 1  # (0.25, 0.5) -> (0, 1); (0.4, 0.6) -> (0, 1)


def test_elastic_with_an_affine_field_equals_affine():
    image, label = blob_pair(seed=6)
    a0, a1, a2, b0, b1, b2, _, _ = deform.affine_matrix(12.0, (1.05, 0.95), (1.5, -2.0), 0.0, SIZE, SIZE).numpy()
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    field = np.stack([b0 * xx + b1 * yy + b2 - yy, a0 * xx + a1 * yy + a2 - xx], -1)
    img_e, lab_e = deform.elastic(image, label, field)
    img_a, lab_a = deform.affine(image, label, 12.0, (1.05, 0.95), (1.5, -2.0))
    np.testing.assert_allclose(img_e.numpy(), img_a.numpy(), atol=1e-4)
    assert np.mean(lab_e.numpy() == lab_a.numpy()) > 0.999


def test_random_elastic_is_smooth_seeded_and_aligned():
    image, label = blob_pair(seed=7)
    field = deform.elastic_displacement((1, 2), (SIZE, SIZE), control_points=7, max_displacement=7.5).numpy()
    assert field.shape == (SIZE, SIZE, 2)
    assert np.abs(field).max() > 1.0 and np.abs(field).max() < 1.3 * 7.5
    np.testing.assert_allclose(field[[0, -1]], 0.0, atol=1e-5)  # locked borders
    np.testing.assert_allclose(field[:, [0, -1]], 0.0, atol=1e-5)
    assert np.abs(np.diff(field, axis=0)).max() < 1.5  # smooth: small change from pixel to pixel
    a = deform.random_elastic(image, label, (1, 2))
    b = deform.random_elastic(image, label, (1, 2))
    c = deform.random_elastic(image, label, (2, 2))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    assert not np.allclose(a[0].numpy(), c[0].numpy())
    check_aligned(image, label, *a)
    with pytest.raises(ConfigError, match="control_points"):
        deform.elastic_displacement((1, 2), (8, 8), control_points=3)


def test_random_transforms_run_in_dataset_map_with_static_shapes():
    image, label = blob_pair(seed=8)

    def generate():
        yield image.numpy()[:50], label.numpy()[:50]
        yield image.numpy(), label.numpy()

    spec = (tf.TensorSpec((None, None, 2), tf.float32), tf.TensorSpec((None, None), tf.int32))
    data = tf.data.Dataset.from_generator(generate, output_signature=spec)
    seeds = tf.data.Dataset.random(seed=3).batch(2)

    def augment(pair, seed):
        img, lab = pad_or_crop(pair[0], pair[1], 48)
        split = tf.random.experimental.stateless_split(seed, 3)
        img, lab = deform.random_affine(img, lab, split[0])
        img, lab = deform.random_anisotropy(img, lab, split[1])
        return deform.random_elastic(img, lab, split[2])

    mapped = tf.data.Dataset.zip((data, seeds)).map(augment)
    assert mapped.element_spec[0].shape.as_list() == [48, 48, 2]
    assert mapped.element_spec[1].shape.as_list() == [48, 48]
    for img, lab in mapped:
        assert img.shape == (48, 48, 2) and set(np.unique(lab.numpy())) <= {0, 1, 2, 3}
