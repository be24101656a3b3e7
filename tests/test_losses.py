"""Tests of tfseg.losses: hand-computed Dice/cross-entropy values, logits, gradients, serialization."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfseg.errors import ConfigError
from tfseg.losses import (DiceCrossEntropyLoss, DiceLoss, cross_entropy, dice_cross_entropy_loss, dice_loss,
                          prepare_target)

SMOOTH = 1e-5

# A 2x2 image, 3 foreground pixels; foreground probabilities p1 (background p0 = 1 - p1).
LABELS = np.array([[[0, 1], [1, 1]]])                       # (1, 2, 2)
P1 = np.array([[[0.2, 0.6], [0.8, 0.4]]], "float32")
PROBS = np.stack([1 - P1, P1], axis=-1)                       # (1, 2, 2, 2)


def value(x):
    return ops.convert_to_numpy(x)


def one_hot(labels, num_classes):
    return np.eye(num_classes, dtype="float32")[labels]


# ---------------------------------------------------------------------------------- soft Dice

def test_dice_hand_value_softmax():
    # foreground: sum(p g) = 0.6 + 0.8 + 0.4 = 1.8, sum(p) = 2.0, sum(g) = 3
    expected = 1 - (2 * 1.8 + SMOOTH) / (2.0 + 3 + SMOOTH)
    np.testing.assert_allclose(value(dice_loss(LABELS, PROBS)), [expected], rtol=1e-5)
    assert float(DiceLoss()(LABELS, PROBS)) == pytest.approx(0.28, abs=1e-5)


def test_dice_squared_denominator_hand_value():
    # sum(p^2) = 0.04 + 0.36 + 0.64 + 0.16 = 1.2, sum(g^2) = 3  ->  1 - 3.6 / 4.2 = 1/7
    loss = DiceLoss(squared_denominator=True)
    assert float(loss(LABELS, PROBS)) == pytest.approx(1 / 7, abs=1e-5)


def test_dice_include_background_hand_value():
    # background: g0 = [1, 0, 0, 0], p0 = [0.8, 0.4, 0.2, 0.6]: sum(p g) = 0.8, sum(p) = 2, sum(g) = 1
    dice_bg = 2 * 0.8 / (2.0 + 1)
    dice_fg = 2 * 1.8 / (2.0 + 3)
    loss = DiceLoss(include_background=True)
    assert float(loss(LABELS, PROBS)) == pytest.approx(1 - (dice_bg + dice_fg) / 2, abs=1e-5)


def test_dice_sigmoid_hand_value():
    # channel 0: g = [1, 1, 0, 0], p = [0.9, 0.5, 0.5, 0.1]: sum(p g) = 1.4, sum(p) = 2.0, sum(g) = 2
    # channel 1: g = [0, 0, 0, 1], p = [0, 0, 0, 0.5]:       sum(p g) = 0.5, sum(p) = 0.5, sum(g) = 1
    truth = np.array([[[1, 0], [1, 0]], [[0, 0], [0, 1]]], "float32")[None]      # (1, 2, 2, 2)
    probs = np.array([[[0.9, 0.0], [0.5, 0.0]], [[0.5, 0.0], [0.1, 0.5]]], "float32")[None]
    expected = 1 - (2 * 1.4 / 4.0 + 2 * 0.5 / 1.5) / 2
    assert float(DiceLoss(mode="sigmoid")(truth, probs)) == pytest.approx(expected, abs=1e-5)
    # include_background has no effect in sigmoid mode: every channel counts.
    assert float(DiceLoss(mode="sigmoid", include_background=True)(truth, probs)) == pytest.approx(expected, abs=1e-5)


def test_dice_perfect_and_complement():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(2, 6, 6))
    labels[:, 0, :3] = [0, 1, 2]                                # every class present in every sample
    perfect = one_hot(labels, 3)
    assert float(DiceLoss()(labels, perfect)) == pytest.approx(0.0, abs=1e-6)
    wrong = one_hot((labels + 1) % 3, 3)                        # every pixel on another class
    assert float(DiceLoss()(labels, wrong)) == pytest.approx(1.0, abs=1e-6)

    masks = (rng.random((2, 5, 5, 3)) > 0.5).astype("float32")
    masks[:, 0, 0, :], masks[:, 0, 1, :] = 1, 0
    assert float(DiceLoss(mode="sigmoid")(masks, masks)) == pytest.approx(0.0, abs=1e-6)
    assert float(DiceLoss(mode="sigmoid")(masks, 1 - masks)) == pytest.approx(1.0, abs=1e-6)


def test_dice_3d_and_label_layouts():
    # (1, 2, 3, 3) volume: truth foreground [:, 0:2, 0:2] (8 voxels), prediction [:, 1:3, 0:2] (8),
    # overlap 4 voxels -> Dice 2*4 / 16 = 0.5.
    truth = np.zeros((1, 2, 3, 3), "int64")
    truth[0, :, 0:2, 0:2] = 1
    pred = np.zeros((1, 2, 3, 3), "int64")
    pred[0, :, 1:3, 0:2] = 1
    probs = one_hot(pred, 2)
    assert float(DiceLoss()(truth, probs)) == pytest.approx(0.5, abs=1e-5)
    # (B, *spatial, 1) labels and float labels give the same value.
    assert float(DiceLoss()(truth[..., None].astype("float32"), probs)) == pytest.approx(0.5, abs=1e-5)


def test_batch_dice_sums_over_the_batch():
    # Sample 2 has no foreground and p1 = 0.1 on its 4 pixels: per-sample Dice ~ 0 (loss ~ 1);
    # pooled: sum(p g) = 1.8, sum(p) = 2.0 + 0.4, sum(g) = 3 -> Dice 3.6 / 5.4 = 2/3 for both samples.
    labels = np.concatenate([LABELS, np.zeros_like(LABELS)])
    p1 = np.concatenate([P1, np.full_like(P1, 0.1)])
    probs = np.stack([1 - p1, p1], axis=-1)
    per_sample = value(dice_loss(labels, probs))
    np.testing.assert_allclose(per_sample, [0.28, 1.0], atol=1e-4)
    pooled = value(dice_loss(labels, probs, batch_dice=True))
    np.testing.assert_allclose(pooled, [1 / 3, 1 / 3], atol=1e-5)


def test_dice_returns_per_sample_values_for_keras_reduction():
    labels = np.concatenate([LABELS, LABELS])
    probs = np.concatenate([PROBS, one_hot(LABELS, 2)])          # losses 0.28 and 0
    np.testing.assert_allclose(value(dice_loss(labels, probs)), [0.28, 0.0], atol=1e-5)
    assert float(DiceLoss()(labels, probs)) == pytest.approx(0.14, abs=1e-5)
    assert float(DiceLoss(reduction="sum")(labels, probs)) == pytest.approx(0.28, abs=1e-5)
    assert float(DiceLoss()(labels, probs, sample_weight=np.array([1.0, 0.0]))) == pytest.approx(0.14, abs=1e-5)
    assert value(DiceLoss(reduction=None)(labels, probs)).shape == (2,)


@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
def test_from_logits_matches_probabilities(mode):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(2, 5, 4, 3)).astype("float32")
    if mode == "softmax":
        truth = rng.integers(0, 3, size=(2, 5, 4))
        probs = value(ops.softmax(logits, axis=-1))
    else:
        truth = (rng.random((2, 5, 4, 3)) > 0.6).astype("float32")
        probs = value(ops.sigmoid(logits))
    for loss_cls in (DiceLoss, DiceCrossEntropyLoss):
        from_probs = value(loss_cls(mode=mode, reduction=None)(truth, probs))
        from_logits = value(loss_cls(mode=mode, from_logits=True, reduction=None)(truth, logits))
        np.testing.assert_allclose(from_logits, from_probs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
@pytest.mark.parametrize("loss_cls", [DiceLoss, DiceCrossEntropyLoss])
def test_gradients_finite_on_empty_targets(mode, loss_cls):
    truth = np.zeros((2, 4, 4) if mode == "softmax" else (2, 4, 4, 2), "float32")
    for logits_init in (np.zeros((2, 4, 4, 2)), np.full((2, 4, 4, 2), -30.0), np.full((2, 4, 4, 2), 30.0)):
        logits = tf.Variable(logits_init.astype("float32"))
        with tf.GradientTape() as tape:
            loss = loss_cls(mode=mode, from_logits=True)(truth, logits)
        grad = tape.gradient(loss, logits)
        assert np.isfinite(float(loss))
        assert np.all(np.isfinite(grad.numpy()))
    # Probabilities exactly 0 and 1 (no logits) stay finite too.
    probs = tf.Variable(np.stack([np.ones((2, 4, 4)), np.zeros((2, 4, 4))], -1).astype("float32"))
    with tf.GradientTape() as tape:
        loss = loss_cls(mode=mode)(truth, probs)
    assert np.all(np.isfinite(tape.gradient(loss, probs).numpy()))


def test_half_precision_predictions_are_summed_in_float32():
    # 300 x 300 foreground pixels: sum(p) + sum(g) = 180000 overflows float16 (max 65504).
    labels = np.ones((1, 300, 300), "int32")
    probs = np.zeros((1, 300, 300, 2), "float16")
    probs[..., 1] = 0.75
    probs[..., 0] = 0.25
    # Dice = 2 * 0.75 n / (0.75 n + n) = 1.5 / 1.75
    assert float(dice_loss(labels, probs)[0]) == pytest.approx(1 - 1.5 / 1.75, abs=1e-4)


def test_empty_target_predicted_empty_is_a_perfect_score():
    truth = np.zeros((1, 4, 4), "int64")
    probs = one_hot(truth, 2)
    assert float(DiceLoss()(truth, probs)) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------- cross-entropy

def test_cross_entropy_hand_values():
    labels = np.array([[[0, 1]]])                                        # (1, 1, 2)
    probs = np.array([[[[0.8, 0.2], [0.4, 0.6]]]], "float32")           # (1, 1, 2, 2)
    plain = (-math.log(0.8) - math.log(0.6)) / 2
    np.testing.assert_allclose(value(cross_entropy(labels, probs)), [plain], rtol=1e-5)
    # class weights [1, 3]: weighted mean (1 * -log 0.8 + 3 * -log 0.6) / (1 + 3)
    weighted = (1 * -math.log(0.8) + 3 * -math.log(0.6)) / 4
    np.testing.assert_allclose(value(cross_entropy(labels, probs, class_weights=[1, 3])), [weighted], rtol=1e-5)

    # sigmoid: channel 0 target [1, 0], p [0.8, 0.4]; channel 1 target [0, 1], p [0.2, 0.6]
    truth = np.array([[[[1, 0], [0, 1]]]], "float32")
    ch0 = (-math.log(0.8) - math.log(0.6)) / 2
    ch1 = (-math.log(0.8) - math.log(0.6)) / 2
    np.testing.assert_allclose(value(cross_entropy(truth, probs, mode="sigmoid")), [(ch0 + ch1) / 2], rtol=1e-5)
    probs2 = np.array([[[[0.5, 0.2], [0.5, 0.6]]]], "float32")
    ch0 = math.log(2)
    np.testing.assert_allclose(value(cross_entropy(truth, probs2, mode="sigmoid", class_weights=[1, 3])),
                               [(1 * ch0 + 3 * ch1) / 4], rtol=1e-5)


def test_dice_cross_entropy_combines_both_terms():
    dice = 0.28
    ce = (-math.log(0.8) - math.log(0.6) - math.log(0.8) - math.log(0.4)) / 4   # p(true class) per pixel
    loss = DiceCrossEntropyLoss(dice_weight=2.0, ce_weight=0.5)
    assert float(loss(LABELS, PROBS)) == pytest.approx(2 * dice + 0.5 * ce, abs=1e-5)
    np.testing.assert_allclose(value(dice_cross_entropy_loss(LABELS, PROBS, ce_weight=0.0)), [dice], atol=1e-5)


# ---------------------------------------------------------------------------------- bad input

def test_bad_arguments_and_shapes_raise_config_errors():
    with pytest.raises(ConfigError, match="mode must be one of"):
        DiceLoss(mode="softmx")
    with pytest.raises(ConfigError, match="smooth"):
        DiceLoss(smooth=0)
    with pytest.raises(ConfigError, match="class_weights"):
        DiceCrossEntropyLoss(class_weights=[1, -1])
    with pytest.raises(ConfigError, match="class_weights has 3 entries"):
        DiceCrossEntropyLoss(class_weights=[1, 2, 3])(LABELS, PROBS)
    with pytest.raises(ConfigError, match=r"y_true shape \(1, 2, 2, 2\) does not fit y_pred"):
        DiceLoss()(PROBS, PROBS)                                  # one-hot truth in softmax mode
    with pytest.raises(ConfigError, match="does not fit"):
        DiceLoss()(np.zeros((1, 3, 2)), PROBS)                    # spatial sizes differ
    with pytest.raises(ConfigError, match="does not fit"):
        DiceLoss(mode="sigmoid")(LABELS, PROBS)                   # label map in sigmoid mode
    with pytest.raises(ConfigError, match="at least 2 channels"):
        DiceLoss()(LABELS, PROBS[..., :1])


def test_prepare_target_layouts():
    pred = np.zeros((1, 2, 2, 1), "float32")
    mask = np.array([[[1, 0], [0, 1]]])
    target = value(prepare_target(mask, pred, "sigmoid"))        # (B, H, W) accepted when C == 1
    assert target.shape == (1, 2, 2, 1) and target[..., 0].tolist() == mask.tolist()
    labels = np.array([[[0.0, 2.0000001]]])
    assert value(prepare_target(labels, np.zeros((1, 1, 2, 3)), "softmax")).tolist() == [[[[1, 0, 0], [0, 0, 1]]]]


# ---------------------------------------------------------------------------------- serialization

@pytest.mark.parametrize("loss", [
    DiceLoss(mode="sigmoid", from_logits=True, smooth=1.0, squared_denominator=True, batch_dice=True,
             reduction="sum", name="my_dice"),
    DiceCrossEntropyLoss(dice_weight=0.5, ce_weight=2.0, class_weights=[0.1, 1.0], include_background=True),
])
def test_serialize_round_trip(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    truth = (np.arange(8).reshape(1, 2, 2, 2) % 2).astype("float32")
    if loss.options["mode"] == "softmax":
        truth = truth[..., 0]
    np.testing.assert_allclose(value(restored(truth, PROBS)), value(loss(truth, PROBS)))


def test_compiled_model_saves_and_loads(tmp_path):
    from tfseg.metrics import DiceScore  # the metrics module is tested in its own file

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(2, 1)(inputs)                   # logits
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=DiceCrossEntropyLoss(from_logits=True, class_weights=[0.5, 1.0]),
                  metrics=[DiceScore(2, from_logits=True)])
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    y = (x[..., 0] > 0.5).astype("int32")
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, DiceCrossEntropyLoss)
    assert restored.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)


# ---------------------------------------------------------------------------------------- focal loss
def test_focal_loss_hand_computed_softmax():
    from tfseg.losses import focal_loss

    probs = np.array([[[[0.8, 0.2], [0.4, 0.6]]]], "float32")  # (1, 1, 2, 2)
    labels = np.array([[[0, 1]]])
    expected = np.mean([-(0.2 ** 2) * np.log(0.8), -(0.4 ** 2) * np.log(0.6)])
    assert float(focal_loss(labels, probs, gamma=2.0)[0]) == pytest.approx(expected, rel=1e-5)
    alpha = [0.25, 1.0]
    weighted = np.mean([-0.25 * (0.2 ** 2) * np.log(0.8), -(0.4 ** 2) * np.log(0.6)])
    assert float(focal_loss(labels, probs, gamma=2.0, alpha=alpha)[0]) == pytest.approx(weighted, rel=1e-5)


def test_focal_loss_reduces_to_cross_entropy_and_matches_logits():
    from tfseg.losses import cross_entropy, focal_loss

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 6, 6))
    logits = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(focal_loss(labels, probs, gamma=0.0), cross_entropy(labels, probs), rtol=1e-5)
    np.testing.assert_allclose(focal_loss(labels, logits, from_logits=True), focal_loss(labels, probs), rtol=1e-4)
    target = (rng.random((2, 6, 6, 2)) > 0.5).astype("float32")
    sig = 1 / (1 + np.exp(-logits[..., :2]))
    np.testing.assert_allclose(focal_loss(target, sig, mode="sigmoid", gamma=0.0),
                               cross_entropy(target, sig, mode="sigmoid"), rtol=1e-5)
    np.testing.assert_allclose(focal_loss(target, logits[..., :2], mode="sigmoid", from_logits=True),
                               focal_loss(target, sig, mode="sigmoid"), rtol=1e-4)


def test_focal_loss_down_weights_easy_pixels():
    from tfseg.losses import focal_loss

    labels = np.array([[[1]]])
    easy = np.array([[[[0.05, 0.95]]]], "float32")
    hard = np.array([[[[0.6, 0.4]]]], "float32")
    ratio_focal = float(focal_loss(labels, easy)[0]) / float(focal_loss(labels, hard)[0])
    ratio_ce = float(focal_loss(labels, easy, gamma=0)[0]) / float(focal_loss(labels, hard, gamma=0)[0])
    assert ratio_focal < ratio_ce / 10


def test_focal_loss_class_round_trip_and_errors(tmp_path):
    import keras

    from tfseg.errors import ConfigError
    from tfseg.losses import FocalLoss

    loss = FocalLoss(gamma=1.5, alpha=[0.5, 1.0, 1.0], dice_weight=0.5)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    labels = np.array([[[0, 1, 2]]])
    probs = np.full((1, 1, 3, 3), 1 / 3, "float32")
    assert float(clone(labels, probs)) == pytest.approx(float(loss(labels, probs)))
    with pytest.raises(ConfigError, match="alpha has 2 entries"):
        FocalLoss(alpha=[1.0, 1.0])(labels, probs)
    with pytest.raises(ConfigError, match="gamma"):
        FocalLoss(gamma=-1)
