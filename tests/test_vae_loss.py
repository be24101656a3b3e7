"""The VAE terms of Myronenko 2018 (L2 reconstruction, KL) and the combined SegResNet-VAE loss, by hand."""
import numpy as np
import pytest

from tfseg.errors import ConfigError
from tfseg.losses import (VAE_KL_WEIGHT, VAE_L2_WEIGHT, dice_loss, kl_divergence, reconstruction_l2,
                          segresnet_vae_loss, vae_regularization)


def test_paper_weights():
    assert VAE_L2_WEIGHT == 0.1 and VAE_KL_WEIGHT == 0.1


def test_l2_by_hand():
    image = np.zeros((2, 2, 2, 1), "float32")
    recon = image.copy()
    recon[0, 0, 0, 0] = 2.0        # sample 0: (4 + 0 + 0 + 0) / 4 = 1
    recon[1] = 0.5                  # sample 1: 0.25 everywhere
    np.testing.assert_allclose(reconstruction_l2(image, recon), [1.0, 0.25])
    volume = np.arange(2 * 3 * 2 * 2 * 2, dtype="float32").reshape(2, 3, 2, 2, 2)
    np.testing.assert_allclose(reconstruction_l2(volume, volume - 3.0), [9.0, 9.0])
    with pytest.raises(ConfigError, match="does not match image shape"):
        reconstruction_l2(image, np.zeros((2, 2, 2, 2), "float32"))


def test_kl_by_hand():
    mean = np.array([[0.5, -1.0], [0.0, 0.0]], "float32")
    std = np.array([[2.0, 0.5], [1.0, 1.0]], "float32")
    log_var = np.log(std**2)
    # sample 0: (0.25 + 4 - log 4 - 1) + (1 + 0.25 - log 0.25 - 1) = 3.5 + 0 (logs cancel) = 3.5
    expected = np.array([3.5, 0.0])
    np.testing.assert_allclose(kl_divergence(mean, log_var, num_voxels=1), expected, rtol=1e-6)
    np.testing.assert_allclose(kl_divergence(mean, log_var, num_voxels=7), expected / 7, rtol=1e-6)
    np.testing.assert_allclose(kl_divergence(mean, log_var), expected / 2, rtol=1e-6)   # mean over 2 dims
    with pytest.raises(ConfigError, match="num_voxels must be a positive number"):
        kl_divergence(mean, log_var, num_voxels=0)


def test_kl_is_zero_only_at_the_standard_normal():
    rng = np.random.default_rng(0)
    mean, log_var = rng.normal(size=(5, 16)).astype("float32"), rng.normal(size=(5, 16)).astype("float32")
    assert np.all(np.asarray(kl_divergence(mean, log_var)) > 0)
    np.testing.assert_allclose(kl_divergence(np.zeros((1, 16)), np.zeros((1, 16))), [0.0], atol=1e-7)


def test_regularization_weights():
    image = np.zeros((1, 2, 2, 1), "float32")
    mean, log_var = np.array([[1.0, 1.0]], "float32"), np.zeros((1, 2), "float32")   # KL sum = 2
    l2, kl = 1.0, 2.0 / 4
    np.testing.assert_allclose(vae_regularization(image, image + 1, mean, log_var, num_voxels=4),
                               [0.1 * l2 + 0.1 * kl], rtol=1e-6)
    np.testing.assert_allclose(vae_regularization(image, image + 1, mean, log_var, 1.0, 0.0, 4), [l2])
    np.testing.assert_allclose(vae_regularization(image, image + 1, mean, log_var, 0.0, 2.0, 4), [2 * kl])
    with pytest.raises(ConfigError, match="must be >= 0"):
        vae_regularization(image, image, mean, log_var, kl_weight=-0.1)


def test_combined_loss_is_dice_plus_tenth_l2_plus_tenth_kl():
    rng = np.random.default_rng(1)
    target = (rng.random((2, 4, 4, 4, 3)) > 0.5).astype("float32")
    probs = rng.random((2, 4, 4, 4, 3)).astype("float32")
    image = rng.normal(size=(2, 4, 4, 4, 2)).astype("float32")
    recon = rng.normal(size=(2, 4, 4, 4, 2)).astype("float32")
    mean, log_var = rng.normal(size=(2, 8)).astype("float32"), rng.normal(size=(2, 8)).astype("float32")
    total = segresnet_vae_loss(target, probs, image, recon, mean, log_var, num_voxels=64)
    inter = np.sum(target * probs, axis=(1, 2, 3))
    dice = 1 - np.mean((2 * inter + 1e-5) / (probs.sum(axis=(1, 2, 3)) + target.sum(axis=(1, 2, 3)) + 1e-5), -1)
    l2 = np.mean((image - recon) ** 2, axis=(1, 2, 3, 4))
    kl = np.sum(mean**2 + np.exp(log_var) - log_var - 1, axis=-1) / 64
    np.testing.assert_allclose(dice_loss(target, probs, mode="sigmoid"), dice, rtol=1e-5)
    np.testing.assert_allclose(total, dice + 0.1 * l2 + 0.1 * kl, rtol=1e-5)
