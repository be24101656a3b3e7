"""SegResNet and SegResNet-VAE: shapes, serialization, parameter counts, weight sharing, training."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.errors import ConfigError
from tfseg.losses import DiceLoss, vae_regularization
from tfseg.models import build_model, get_builder, inference_model, segresnet, segresnet_vae
from tfseg.models.segresnet import VAERegularization, VAESampling, split_latent
from tfseg.training.trainer import Trainer

TINY = {"init_filters": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)}
TINY_VAE = {**TINY, "vae_latent": 8, "vae_filters": 4}


def images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def randomize(model, seed=0):
    """Random weights everywhere (GroupNorm starts as identity, which would hide differences)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.2, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def segresnet_params(in_channels, num_classes, init_filters, blocks_down, blocks_up, k=27):
    """Trainable weights of SegResNet worked out from the architecture (GroupNorm: 2 per channel).

    Stem conv (no bias); per level a stride-2 conv (no bias, levels > 0) and residual blocks of two
    GroupNorms and two bias-free 3^d convs; per decoder level a bias-free 1x1 conv halving the
    filters (upsampling has no weights) and residual blocks; head GroupNorm + 1x1 conv with bias.
    """
    def block(c):
        return 2 * (2 * c) + 2 * (k * c * c)

    total = k * in_channels * init_filters
    for level, n in enumerate(blocks_down):
        c = init_filters * 2**level
        if level:
            total += k * (c // 2) * c
        total += n * block(c)
    for level, n in enumerate(blocks_up):
        c = init_filters * 2**level
        total += (2 * c) * c + n * block(c)
    return total + 2 * init_filters + init_filters * num_classes + num_classes


def vae_params(in_channels, input_size, init_filters, blocks_down, blocks_up, latent, vae_filters, k=27):
    """Trainable weights of the VAE branch alone, from the architecture (paper's table 1)."""
    top = init_filters * 2 ** (len(blocks_down) - 1)
    small = math.prod(s // 2 ** len(blocks_down) for s in input_size)
    total = 2 * top + k * top * vae_filters + vae_filters                     # GN, ReLU, conv stride 2
    total += small * vae_filters * 2 * latent + 2 * latent                    # dense to means + log-variances
    total += latent * small * vae_filters + small * vae_filters               # dense back
    total += vae_filters * top + top                                          # 1x1 conv to the top filters
    for level, n in enumerate(blocks_up):
        c = init_filters * 2**level
        total += 2 * c * c + n * (4 * c + 2 * k * c * c)
    return total + init_filters * in_channels + in_channels                   # 1x1 conv to the input channels


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# --------------------------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("spatial_dims,input_shape", [(2, (32, 32, 3)), (2, (None, None, 1)),
                                                      (3, (16, 16, 16, 4)), (3, (None, None, None, 2))])
def test_output_shape_2d_and_3d(spatial_dims, input_shape):
    model = segresnet(input_shape, num_classes=3, spatial_dims=spatial_dims, **TINY)
    assert model.output_shape == (None, *input_shape[:-1], 3)
    size = tuple(16 if n is None else n for n in input_shape[:-1])
    probs = model.predict(images((1, *size, input_shape[-1])), verbose=0)
    assert probs.shape == (1, *size, 3)
    assert probs.min() >= 0 and probs.max() <= 1


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_vae_output_shapes(spatial_dims):
    shape = (16,) * spatial_dims + (2,)
    model = segresnet_vae(shape, num_classes=3, spatial_dims=spatial_dims, **TINY_VAE)
    assert model.output_names == ["probabilities", "reconstruction"]
    out = model(images((2, *shape)), training=True)
    assert tuple(out["probabilities"].shape) == (2, *shape[:-1], 3)
    assert tuple(out["reconstruction"].shape) == (2, *shape)
    assert len(model.losses) == 1 and np.isfinite(float(model.losses[0]))


def test_output_activation_options():
    logits = segresnet((16, 16, 1), num_classes=2, spatial_dims=2, output_activation=None, **TINY)
    softmax = segresnet((16, 16, 1), num_classes=2, spatial_dims=2, output_activation="softmax", **TINY)
    softmax.set_weights(randomize(logits).get_weights())
    x = images((1, 16, 16, 1))
    np.testing.assert_allclose(softmax(x).numpy(), tf.nn.softmax(logits(x)).numpy(), atol=1e-6)


# -------------------------------------------------------------------------------- parameter counts

def test_trainable_weight_count_by_formula():
    model = segresnet((16, 16, 16, 2), num_classes=3, **TINY)
    assert trainable_count(model) == segresnet_params(2, 3, 8, (1, 1, 1), (1, 1))
    assert trainable_count(model) == 108571
    model2d = segresnet((32, 32, 3), num_classes=2, spatial_dims=2, init_filters=8, blocks_down=(1, 2, 2),
                        blocks_up=(1, 1))
    assert trainable_count(model2d) == segresnet_params(3, 2, 8, (1, 2, 2), (1, 1), k=9)


def test_paper_sizes_match_monai_segresnet():
    # MONAI SegResNet(init_filters=16, in_channels=4, out_channels=3): 4.70 M; init 32 (the paper): 18.8 M.
    small = segresnet(init_filters=16)
    assert trainable_count(small) == segresnet_params(4, 3, 16, (1, 2, 2, 4), (1, 1, 1)) == 4_702_227
    assert trainable_count(segresnet()) == segresnet_params(4, 3, 32, (1, 2, 2, 4), (1, 1, 1)) == 18_798_627


def test_vae_weight_count_by_formula():
    model = segresnet_vae((16, 16, 16, 2), num_classes=3, **TINY_VAE)
    expected = segresnet_params(2, 3, 8, (1, 1, 1), (1, 1)) + vae_params(2, (16, 16, 16), 8, (1, 1, 1), (1, 1), 8, 4)
    assert trainable_count(model) == expected


# --------------------------------------------------------------------------------- serialization

def test_keras_round_trip_segresnet(tmp_path):
    model = randomize(segresnet((16, 16, 16, 2), num_classes=3, **TINY))
    path = tmp_path / "segresnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images((1, 16, 16, 16, 2), seed=3)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_keras_round_trip_segresnet_vae(tmp_path):
    model = randomize(segresnet_vae((16, 16, 16, 2), num_classes=3, seed=5, **TINY_VAE))
    path = tmp_path / "segresnet_vae.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("vae_sample"), VAESampling)
    assert loaded.get_layer("reconstruction").get_config()["num_voxels"] == 16**3
    x = images((1, 16, 16, 16, 2), seed=3)
    out, out_loaded = model(x, training=False), loaded(x, training=False)
    for key in ("probabilities", "reconstruction"):
        np.testing.assert_array_equal(out[key].numpy(), out_loaded[key].numpy())
    assert float(model.losses[0]) == float(loaded.losses[0])


# ----------------------------------------------------------------------------- the VAE branch

def test_vae_loss_is_l2_plus_kl_of_the_branch():
    model = randomize(segresnet_vae((16, 16, 16, 2), num_classes=3, **TINY_VAE), seed=2)
    x = images((2, 16, 16, 16, 2), seed=4)
    stats = keras.Model(model.input, model.get_layer("vae_stats").output)(x).numpy()
    out = model(x, training=False)
    mean, log_var = split_latent(stats)
    expected = np.mean(vae_regularization(x, out["reconstruction"], mean, log_var, 0.1, 0.1, num_voxels=16**3))
    by_hand_kl = np.sum(mean**2 + np.exp(log_var) - log_var - 1, axis=-1) / 16**3
    by_hand_l2 = np.mean((x - out["reconstruction"].numpy()) ** 2, axis=(1, 2, 3, 4))
    np.testing.assert_allclose(float(model.losses[0]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(model.losses[0]), np.mean(0.1 * by_hand_l2 + 0.1 * by_hand_kl), rtol=1e-4)


def test_sampling_is_random_in_training_and_the_mean_otherwise():
    stats = np.concatenate([np.full((4, 3), 2.0), np.zeros((4, 3))], axis=-1).astype("float32")  # std 1
    layer = VAESampling(seed=1)
    np.testing.assert_array_equal(layer(stats, training=False).numpy(), stats[:, :3])
    z1, z2 = layer(stats, training=True).numpy(), layer(stats, training=True).numpy()
    assert not np.allclose(z1, z2) and not np.allclose(z1, 2.0)
    tiny_std = np.concatenate([stats[:, :3], np.full((4, 3), -40.0, "float32")], axis=-1)
    np.testing.assert_allclose(layer(tiny_std, training=True).numpy(), 2.0, atol=1e-6)
    again = VAESampling.from_config(VAESampling(seed=1).get_config())
    np.testing.assert_array_equal(again(stats, training=True).numpy(), VAESampling(seed=1)(stats, training=True))


def test_regularization_layer_weights_and_config():
    layer = VAERegularization(l2_weight=0.5, kl_weight=0.0, num_voxels=8)
    image = np.zeros((1, 2, 2, 1), "float32")
    out = layer([image, image + 2.0, np.zeros((1, 4), "float32")])
    np.testing.assert_array_equal(out, image + 2.0)
    assert float(layer.losses[0]) == pytest.approx(2.0)   # 0.5 * 4
    assert VAERegularization.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ConfigError, match="must be >= 0"):
        VAERegularization(l2_weight=-1)


def test_trainer_fits_the_vae_model_and_the_vae_terms_reach_the_branch():
    keras.utils.set_random_seed(0)
    model = segresnet_vae((16, 16, 16, 2), num_classes=3, seed=0, **TINY_VAE)
    x = images((2, 16, 16, 16, 2), seed=7)
    y = (np.random.default_rng(8).random((2, 16, 16, 16, 3)) > 0.7).astype("float32")

    # The Dice loss alone gives the VAE branch no gradient; the model's own loss does.
    with tf.GradientTape(persistent=True) as tape:
        out = model(x, training=True)
        dice = tf.reduce_mean(DiceLoss(mode="sigmoid")(y, out["probabilities"]))
        vae = tf.add_n(model.losses)
    stats_kernel = model.get_layer("vae_stats").kernel
    assert tape.gradient(dice, stats_kernel) is None
    assert float(tf.norm(tape.gradient(vae, stats_kernel))) > 0
    assert float(tf.norm(tape.gradient(vae, model.get_layer("enc0_block0_conv1").kernel))) > 0

    data = tf.data.Dataset.from_tensor_slices((x, {"probabilities": y})).batch(1)
    trainer = Trainer(model, {"probabilities": DiceLoss(mode="sigmoid")}, keras.optimizers.Adam(1e-3))
    before = {name: model.get_layer(name).get_weights()[0].copy()
              for name in ("vae_stats", "vae_up_dense", "vae_end_conv", "stem_conv")}
    history = trainer.fit(data, epochs=1, verbose=0)  # two steps
    assert all(np.isfinite(history["loss"]))
    for name, weights in before.items():
        assert not np.allclose(model.get_layer(name).get_weights()[0], weights), name
    # The logged loss is Dice + the VAE term (evaluation: z = mean).
    logs = trainer.evaluate(data.take(1))
    out = model(x[:1], training=False)
    dice = float(DiceLoss(mode="sigmoid")(y[:1], out["probabilities"]))
    assert logs["loss"] == pytest.approx(dice + float(model.losses[0]), rel=1e-4)


# ------------------------------------------------------------------------------- inference_model

def test_inference_model_shares_the_trained_weights():
    train = randomize(segresnet_vae((16, 16, 16, 2), num_classes=3, **TINY_VAE), seed=1)
    infer = inference_model(train)
    plain = segresnet((16, 16, 16, 2), num_classes=3, **TINY)
    assert trainable_count(infer) == trainable_count(plain) < trainable_count(train)
    assert sorted(layer.name for layer in infer.layers) == sorted(layer.name for layer in plain.layers)
    assert not [layer.name for layer in infer.layers if layer.name.startswith("vae") or layer.name == "reconstruction"]
    x = images((1, 16, 16, 16, 2), seed=2)
    np.testing.assert_allclose(infer(x).numpy(), train(x, training=False)["probabilities"].numpy(), atol=1e-6)
    before = infer(x).numpy()
    kernel = train.get_layer("head_conv").kernel
    kernel.assign(kernel.numpy() * 3.0)
    after = infer(x).numpy()
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, train(x, training=False)["probabilities"].numpy(), atol=1e-6)


def test_inference_model_on_other_sizes_and_plain_weights_load_by_name(tmp_path):
    train = randomize(segresnet_vae((16, 16, 16, 2), num_classes=3, **TINY_VAE), seed=3)
    infer = inference_model(train, input_shape=(None, None, None, 2), name="brats_infer")
    assert infer.input_shape == (None, None, None, None, 2) and infer.name == "brats_infer"
    assert infer.get_layer("stem_conv") is train.get_layer("stem_conv")
    x = images((1, 32, 16, 24, 2), seed=4)
    plain = segresnet((None, None, None, 2), num_classes=3, **TINY)
    for layer in plain.layers:
        layer.set_weights(train.get_layer(layer.name).get_weights())
    np.testing.assert_allclose(infer(x).numpy(), plain(x).numpy(), atol=1e-6)
    path = tmp_path / "infer.keras"
    infer.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path).predict(x, verbose=0), infer.predict(x, verbose=0))


def test_inference_model_errors():
    plain = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1, name="conv")])
    with pytest.raises(ConfigError, match="no layer named 'probabilities'"):
        inference_model(plain)
    train = segresnet_vae((16, 16, 2), spatial_dims=2, **TINY_VAE)
    with pytest.raises(ConfigError, match="input channels"):
        inference_model(train, input_shape=(None, None, 3))
    with pytest.raises(ConfigError, match="spatial sizes plus channels"):
        inference_model(train, input_shape=(None, None, None, 2))


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kwargs,message", [
    ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
    ({"input_shape": (16, 16, 4)}, "must have 3 spatial sizes plus channels"),
    ({"input_shape": (18, 16, 16, 4)}, "input size 18 .* not divisible by 4"),
    ({"input_shape": (16, 16, 16, 0)}, "channel count"),
    ({"blocks_up": (1, 1, 1)}, "blocks_up must have one entry per decoder level"),
    ({"blocks_down": ()}, "at least one level"),
    ({"blocks_down": (1, 0, 1)}, "integers >= 1"),
    ({"init_filters": 12}, "multiple of 8"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"output_activation": "relu"}, "output_activation must be"),
    ({"num_classes": 0}, "num_classes must be a positive integer"),
])
def test_bad_arguments_raise_config_error(kwargs, message):
    arguments = {"input_shape": (16, 16, 16, 4), **TINY, **kwargs}
    with pytest.raises(ConfigError, match=message):
        segresnet(**arguments)


def test_vae_needs_a_fixed_divisible_shape():
    with pytest.raises(ConfigError, match="needs a fixed input_shape"):
        segresnet_vae((None, None, None, 2), **TINY_VAE)
    # The VAE halves the encoder end once more: 2**len(blocks_down), here 8.
    with pytest.raises(ConfigError, match="input size 12 .* not divisible by 8"):
        segresnet_vae((12, 16, 16, 2), **TINY_VAE)
    with pytest.raises(ConfigError, match="vae_latent must be a positive integer"):
        segresnet_vae((16, 16, 16, 2), **{**TINY_VAE, "vae_latent": 0})
    assert isinstance(ConfigError("x"), ValueError)


def test_builders_are_registered():
    assert get_builder("segresnet") is segresnet and get_builder("segresnet_vae") is segresnet_vae
    model = build_model({"name": "segresnet_vae", "input_shape": [16, 16, 1], "spatial_dims": 2, **TINY_VAE},
                        num_classes=2)
    assert model.output_shape == [(None, 16, 16, 2), (None, 16, 16, 1)]
