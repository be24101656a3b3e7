"""Tests of tfseg.data.transforms.compose: one_of and the BraTS-2D augmentation chain."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.transforms.compose import one_of
from tfseg.workflows.brats2d_augment import Brats2DAugmentation, augment_brats2d, preprocess_brats2d
from tfseg.data.transforms.intensity import percentile_stretch
from tfseg.data.transforms.spatial import pad_or_crop
from tfseg.errors import ConfigError

PATCH = 64


def brats_patch(height=70, width=58, seed=0):
    """Raw 3-channel brain patch (zero outside an ellipse) and a tumour label {0..3} inside the brain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    brain = ((yy - height / 2) / (height * 0.42)) ** 2 + ((xx - width / 2) / (width * 0.42)) ** 2 < 1.0
    tumour = np.exp(-((yy - height * 0.45) ** 2 + (xx - width * 0.55) ** 2) / (2 * 7.0 ** 2))
    label = np.digitize(tumour, [0.2, 0.5, 0.8]).astype(np.int32) * brain
    image = rng.normal([400.0, 900.0, 250.0], 40.0, (height, width, 3)).astype(np.float32)
    image += (300.0 * tumour)[..., None]
    return (image * brain[..., None]).astype(np.float32), label


def marker(value):
    """A branch that fills the image with `value` and adds `value` to the label."""
    return lambda image, label, seed: (tf.fill(tf.shape(image), value), label + int(value))


def branch_counts(branches, probability, weights=None, n=400):
    ds = tf.data.Dataset.random(seed=5).batch(2).take(n)
    ds = ds.map(lambda s: one_of(tf.zeros((2, 2, 1)), tf.zeros((2, 2), tf.int32), s, branches, probability, weights))
    values = np.array([int(lab[0, 0]) for _, lab in ds])
    return np.bincount(values, minlength=len(branches) + 1)


def test_one_of_probability_and_weights():
    image, label = tf.ones((2, 2, 1)), tf.zeros((2, 2), tf.int32)
    img, lab = one_of(image, label, (1, 1), [marker(1.0)], probability=0.0)
    assert np.all(img.numpy() == 1.0) and np.all(lab.numpy() == 0)
    img, lab = one_of(image, label, (1, 1), [marker(3.0)], probability=1.0)
    assert np.all(img.numpy() == 3.0) and np.all(lab.numpy() == 3)
    counts = branch_counts([marker(1.0), marker(2.0), marker(3.0)], 1.0, weights=[0, 1, 0], n=50)
    assert counts.tolist() == [0, 0, 50, 0]
    counts = branch_counts([marker(1.0), marker(2.0)], 0.5, weights=[1, 3])
    # identity ~ 200, branch 1 ~ 50, branch 2 ~ 150 out of 400
    assert 160 < counts[0] < 240 and 25 < counts[1] < 80 and 110 < counts[2] < 190


def test_one_of_is_seeded_and_passes_a_seed_to_the_branch():
    noisy = lambda image, label, seed: (image + tf.random.stateless_normal(tf.shape(image), seed), label)
    image = tf.zeros((4, 4, 1))
    a, none = one_of(image, None, (2, 3), [noisy])
    assert none is None
    b, _ = one_of(image, None, (2, 3), [noisy])
    c, _ = one_of(image, None, (2, 4), [noisy])
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())


def test_one_of_rejects_bad_arguments():
    image = tf.zeros((2, 2, 1))
    with pytest.raises(ConfigError, match="probability"):
        one_of(image, None, (1, 1), [marker(1.0)], probability=1.5)
    with pytest.raises(ConfigError, match="weights"):
        one_of(image, None, (1, 1), [marker(1.0)], weights=[1, 2])
    with pytest.raises(ConfigError, match="branch"):
        one_of(image, None, (1, 1), [])


def test_config_is_frozen_and_validated():
    config = Brats2DAugmentation()
    assert config.patch_size == 128 and config.percentiles == (0.5, 99.5) and config.spatial_probability == 0.95
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.degrees = 3.0
    for bad in (dict(patch_size=0), dict(spatial_probability=2.0), dict(anisotropy=(0.5, 2.0)),
                dict(percentiles=(99.0, 1.0)), dict(elastic_control_points=2), dict(noise_std=-1.0)):
        with pytest.raises(ConfigError):
            Brats2DAugmentation(**bad)


def test_preprocess_is_pad_crop_then_stretch():
    image, label = brats_patch()
    config = Brats2DAugmentation(patch_size=PATCH)
    img, lab = preprocess_brats2d(image, label, config)
    padded, padded_label = pad_or_crop(image, label, PATCH)
    np.testing.assert_allclose(img.numpy(), percentile_stretch(padded).numpy())
    np.testing.assert_array_equal(lab.numpy(), padded_label.numpy())
    assert img.shape == (PATCH, PATCH, 3) and img.numpy().min() == -1.0 and img.numpy().max() == pytest.approx(1.0)
    img_only, none = preprocess_brats2d(image, None, config)
    assert none is None and np.array_equal(img_only.numpy(), img.numpy())


def test_augment_without_randomness_equals_preprocess_and_artifacts_stay_in_the_brain():
    image, label = brats_patch(seed=1)
    still = Brats2DAugmentation(patch_size=PATCH, spatial_probability=0.0, intensity_probability=0.0)
    img, lab = augment_brats2d(image, label, (1, 2), still)
    ref_img, ref_lab = preprocess_brats2d(image, label, still)
    np.testing.assert_array_equal(img.numpy(), ref_img.numpy())
    np.testing.assert_array_equal(lab.numpy(), ref_lab.numpy())
    artifacts_only = dataclasses.replace(still, intensity_probability=1.0)
    outside = ~np.any(pad_or_crop(image, None, PATCH)[0].numpy() != 0, axis=-1)
    changed = 0
    for s in range(4):
        out, _ = augment_brats2d(image, label, (s, 9), artifacts_only)
        assert np.all(out.numpy()[outside] == -1.0)
        changed += not np.allclose(out.numpy(), ref_img.numpy())
    assert changed == 4


def test_augment_is_seeded_aligned_and_graph_compatible():
    config = Brats2DAugmentation(patch_size=PATCH, spatial_probability=1.0, intensity_probability=1.0)
    samples = [brats_patch(70, 58, 2), brats_patch(50, 80, 3)]

    def generate():
        yield from samples

    spec = (tf.TensorSpec((None, None, 3), tf.float32), tf.TensorSpec((None, None), tf.int32))
    data = tf.data.Dataset.from_generator(generate, output_signature=spec).repeat(4)
    seeds = tf.data.Dataset.random(seed=11).batch(2)
    mapped = tf.data.Dataset.zip((data, seeds)).map(lambda pair, seed: augment_brats2d(*pair, seed, config))
    assert mapped.element_spec[0].shape.as_list() == [PATCH, PATCH, 3]
    assert mapped.element_spec[1].shape.as_list() == [PATCH, PATCH]
    outputs = list(mapped)
    assert not np.allclose(outputs[0][0].numpy(), outputs[2][0].numpy())  # same sample, other seed
    for img, lab in outputs:
        img, lab = img.numpy(), lab.numpy()
        assert img.dtype == np.float32 and lab.dtype == np.int32
        assert set(np.unique(lab)) <= {0, 1, 2, 3} and np.any(lab > 0)
        assert np.all(np.isfinite(img)) and np.abs(img).max() < 2.0
        in_brain = np.any(img != -1.0, axis=-1)
        assert np.mean(in_brain[lab > 0]) >= 0.98  # the tumour moved with the brain
    again = augment_brats2d(*samples[0], (4, 4), config)
    twice = augment_brats2d(*samples[0], (4, 4), config)
    np.testing.assert_array_equal(again[0].numpy(), twice[0].numpy())
    np.testing.assert_array_equal(again[1].numpy(), twice[1].numpy())


def test_w3_paper_flip_branch_flips_both_axes_and_weights_pick_the_branch():
    import numpy as np
    import tensorflow as tf

    from tfseg.workflows.brats2d_augment import Brats2DAugmentation, spatial_branches

    image = tf.reshape(tf.range(16, dtype=tf.float32), (4, 4, 1))
    label = tf.reshape(tf.range(16, dtype=tf.int32), (4, 4))
    paper = Brats2DAugmentation(patch_size=4, flip_axes=(0, 1), flip_probability=1.0,
                                spatial_weights=(0.35, 0.35, 0.15, 0.15), elastic_max_displacement=(2.0, 2.0, 0.0))
    flipped, flipped_label = spatial_branches(paper)[0](image, label, tf.constant([3, 4], tf.int64))
    np.testing.assert_array_equal(flipped[..., 0].numpy(), image[::-1, ::-1, 0].numpy())
    np.testing.assert_array_equal(flipped_label.numpy(), label[::-1, ::-1].numpy())
    # only the flip branch has weight: with probability 1 every draw flips both axes
    only_flip = Brats2DAugmentation(patch_size=4, flip_axes=(0, 1), flip_probability=1.0, spatial_probability=1.0,
                                    spatial_weights=(1.0, 0.0, 0.0, 0.0))
    from tfseg.data.transforms.compose import one_of

    for i in range(5):
        out, _ = one_of(image, label, (i, 9), spatial_branches(only_flip), 1.0, weights=only_flip.spatial_weights)
        np.testing.assert_array_equal(out[..., 0].numpy(), image[::-1, ::-1, 0].numpy())
    with pytest.raises(ConfigError, match="spatial_weights"):
        Brats2DAugmentation(spatial_weights=(1.0, 1.0))
