"""Tests of tfseg.metrics: hand-computed Dice/IoU, empty masks, streaming vs numpy, tf.function,
tf.distribute and serialization."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.errors import ConfigError, DataError
from tfseg.metrics import (DiceScore, IoUScore, PixelAccuracy, PrecisionScore, RecallScore, confusion_counts,
                           score_from_counts, segmentation_scores)

# 4x4 softmax example, 3 classes.
TRUTH = np.array([[0, 0, 1, 1],
                  [0, 0, 1, 1],
                  [2, 2, 0, 0],
                  [2, 2, 0, 0]])
PRED = np.array([[0, 0, 1, 0],
                 [0, 1, 1, 1],
                 [2, 0, 0, 0],
                 [2, 2, 0, 0]])
# class 0: truth 8, predicted 9, TP 7 ((0,0) (0,1) (1,0) (2,2) (2,3) (3,2) (3,3)), FP 2 ((0,3) (2,1)), FN 1 ((1,1))
# class 1: truth 4, predicted 4, TP 3 ((0,2) (1,2) (1,3)), FP 1 ((1,1)), FN 1 ((0,3))
# class 2: truth 4, predicted 3, TP 3 ((2,0) (3,0) (3,1)), FP 0, FN 1 ((2,1))
DICE = [2 * 7 / (2 * 7 + 2 + 1), 2 * 3 / (2 * 3 + 1 + 1), 2 * 3 / (2 * 3 + 0 + 1)]
IOU = [7 / (7 + 2 + 1), 3 / (3 + 1 + 1), 3 / (3 + 0 + 1)]


def probs_of(labels, num_classes, confidence=0.7):
    """Probabilities whose argmax is `labels`."""
    probs = np.full(labels.shape + (num_classes,), (1 - confidence) / (num_classes - 1), "float32")
    np.put_along_axis(probs, labels[..., None], confidence, axis=-1)
    return probs


def measure(metric, y_true, y_pred, sample_weight=None):
    metric.reset_state()
    metric.update_state(y_true, y_pred, sample_weight=sample_weight)
    return float(metric.result())


# ---------------------------------------------------------------------------------- hand values

def test_softmax_dice_and_iou_by_hand():
    y_true, y_pred = TRUTH[None], probs_of(PRED[None], 3)
    for c in range(3):
        assert measure(DiceScore(3, class_id=c), y_true, y_pred) == pytest.approx(DICE[c])
        assert measure(IoUScore(3, class_id=c), y_true, y_pred) == pytest.approx(IOU[c])
    assert measure(DiceScore(3), y_true, y_pred) == pytest.approx((DICE[1] + DICE[2]) / 2)
    assert measure(IoUScore(3), y_true, y_pred) == pytest.approx((IOU[1] + IOU[2]) / 2)
    assert measure(DiceScore(3, include_background=True), y_true, y_pred) == pytest.approx(sum(DICE) / 3)
    assert measure(PrecisionScore(3, class_id=1), y_true, y_pred) == pytest.approx(3 / 4)
    assert measure(RecallScore(3, class_id=2), y_true, y_pred) == pytest.approx(3 / 4)
    assert measure(PixelAccuracy(), y_true, y_pred) == pytest.approx((7 + 3 + 3) / 16)
    # (B, H, W, 1) float labels and logits give the same numbers.
    logits = np.log(y_pred)
    assert measure(DiceScore(3, from_logits=True), TRUTH[None, ..., None].astype("float32"), logits) == \
        pytest.approx((DICE[1] + DICE[2]) / 2)


def test_sigmoid_dice_and_iou_by_hand():
    truth = np.zeros((1, 4, 4, 2), "float32")
    truth[0, 0:2, :, 0] = 1                     # channel 0: top half, 8 pixels
    truth[0, 3, 3, 1] = 1                       # channel 1: one pixel
    probs = np.full((1, 4, 4, 2), 0.2, "float32")
    probs[0, 0:2, 0:3, 0] = 0.9                 # channel 0 predicted on 6 + 1 pixels ...
    probs[0, 2, 0, 0] = 0.9
    probs[0, 0, 3, 0] = 0.5                     # ... and not here: 0.5 is not > 0.5
    probs[0, 3, 3, 1] = 0.5                     # channel 1 predicted nowhere
    # channel 0: TP 6, FP 1, FN 2; channel 1: TP 0, FP 0, FN 1
    dice0, iou0 = 2 * 6 / (2 * 6 + 1 + 2), 6 / (6 + 1 + 2)
    assert measure(DiceScore(2, mode="sigmoid", class_id=0), truth, probs) == pytest.approx(dice0)
    assert measure(DiceScore(2, mode="sigmoid", class_id=1), truth, probs) == pytest.approx(0.0)
    assert measure(DiceScore(2, mode="sigmoid"), truth, probs) == pytest.approx((dice0 + 0) / 2)
    assert measure(IoUScore(2, mode="sigmoid"), truth, probs) == pytest.approx((iou0 + 0) / 2)
    assert measure(DiceScore(2, mode="sigmoid", threshold=0.4, class_id=1), truth, probs) == pytest.approx(1.0)
    # pixel accuracy over 32 pixel-channels: channel 0 wrong on 3, channel 1 wrong on 1
    assert measure(PixelAccuracy(mode="sigmoid"), truth, probs) == pytest.approx((32 - 3 - 1) / 32)


def test_3d_volumes():
    # (1, 2, 3, 3) volume: truth [:, 0:2, 0:2] (8 voxels), prediction [:, 1:3, 0:2] (8), overlap 4
    truth = np.zeros((1, 2, 3, 3), "int32")
    truth[0, :, 0:2, 0:2] = 1
    pred = np.zeros((1, 2, 3, 3), "int32")
    pred[0, :, 1:3, 0:2] = 1
    assert measure(DiceScore(2), truth, probs_of(pred, 2)) == pytest.approx(2 * 4 / (8 + 8))
    assert measure(IoUScore(2), truth, probs_of(pred, 2)) == pytest.approx(4 / (8 + 8 - 4))
    sig_truth, sig_probs = truth[..., None].astype("float32"), pred[..., None].astype("float32")
    assert measure(DiceScore(1, mode="sigmoid"), sig_truth, sig_probs) == pytest.approx(0.5)


def test_lazy_background_prediction_digits_lesson():
    truth = np.zeros((1, 50, 50), "int32")
    truth[0, 20:25, 20:30] = 1                   # 50 of 2500 pixels: 2% left ventricle
    lazy = probs_of(np.zeros_like(truth), 2)     # predicts background everywhere
    assert measure(PixelAccuracy(), truth, lazy) == pytest.approx(0.98)
    assert measure(DiceScore(2), truth, lazy) == 0.0
    assert segmentation_scores(np.zeros((50, 50), int), truth[0], 2)["dice"][1] == 0.0


# ---------------------------------------------------------------------------------- empty masks

def test_empty_masks():
    empty = np.zeros((1, 4, 4), "int32")
    some = empty.copy()
    some[0, 1, 1] = 1
    background = probs_of(empty, 2)
    for metric_cls in (DiceScore, IoUScore):
        # absent in truth and prediction: empty_value
        assert measure(metric_cls(2), empty, background) == 1.0
        assert measure(metric_cls(2, empty_value=0.0), empty, background) == 0.0
        # truth empty, prediction not: 0
        assert measure(metric_cls(2), empty, probs_of(some, 2)) == 0.0
        # prediction empty, truth not: 0
        assert measure(metric_cls(2), some, background) == 0.0
    assert measure(PrecisionScore(2), some, background) == 0.0
    assert measure(RecallScore(2), empty, probs_of(some, 2)) == 0.0
    # sigmoid: an empty channel predicted empty counts with empty_value in the mean
    truth = np.zeros((1, 4, 4, 2), "float32")
    truth[0, 0, 0, 0] = 1
    assert measure(DiceScore(2, mode="sigmoid"), truth, truth) == 1.0
    assert measure(DiceScore(2, mode="sigmoid", empty_value=0.0), truth, truth) == pytest.approx(0.5)
    # numpy helpers follow the same rule
    assert segmentation_scores(empty[0], empty[0], 2)["dice"].tolist() == [1.0, 1.0]
    assert segmentation_scores(empty[0], empty[0], 2, empty_value=0.5)["iou"].tolist() == [1.0, 0.5]
    scores = segmentation_scores(some[0], empty[0], 2)
    assert scores["dice"][1] == 0.0 and scores["precision"][1] == 0.0 and scores["recall"][1] == 0.0


# ---------------------------------------------------------------------------------- streaming

def test_batch_size_independence():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, size=(4, 6, 6))
    truth[1] = 0                                 # one sample without foreground
    probs = rng.random((4, 6, 6, 3)).astype("float32")
    whole, split = DiceScore(3), DiceScore(3)
    whole.update_state(truth, probs)
    for i in range(4):
        split.update_state(truth[i:i + 1], probs[i:i + 1])
    assert float(whole.result()) == float(split.result())
    # dataset-level, not the mean of per-batch scores
    per_batch = [measure(DiceScore(3), truth[i:i + 1], probs[i:i + 1]) for i in range(4)]
    assert float(whole.result()) != pytest.approx(np.mean(per_batch))
    whole.reset_state()
    assert float(whole.result()) == 1.0          # nothing seen: every class empty


def test_sample_weight_zero_excludes_a_sample():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, size=(3, 5, 5))
    probs = rng.random((3, 5, 5, 2)).astype("float32")
    for metric in (DiceScore(2), IoUScore(2, class_id=0), PixelAccuracy()):
        weighted = measure(metric, truth, probs, sample_weight=np.array([1.0, 0.0, 1.0]))
        kept = measure(metric, truth[[0, 2]], probs[[0, 2]])
        assert weighted == pytest.approx(kept)
        pixel_weights = np.ones((3, 5, 5), "float32")
        pixel_weights[1] = 0
        assert measure(metric, truth, probs, sample_weight=pixel_weights) == pytest.approx(kept)


def test_update_inside_tf_function():
    metric = DiceScore(3)

    @tf.function(input_signature=[tf.TensorSpec((None, 4, 4), tf.int32), tf.TensorSpec((None, 4, 4, 3))])
    def update(y_true, y_pred):
        metric.update_state(y_true, y_pred)

    update(TRUTH[None].astype("int32"), probs_of(PRED[None], 3))
    update(TRUTH[None].astype("int32"), probs_of(PRED[None], 3))
    assert float(metric.result()) == pytest.approx((DICE[1] + DICE[2]) / 2)


def test_streaming_matches_numpy_on_random_data():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, size=(3, 7, 9))                 # class 3 of 4 never occurs
    pred_labels = rng.integers(0, 3, size=(3, 7, 9))
    probs = probs_of(pred_labels, 4, confidence=0.5)
    scores = segmentation_scores(pred_labels, truth, 4)
    for name, metric_cls in (("dice", DiceScore), ("iou", IoUScore), ("precision", PrecisionScore),
                             ("recall", RecallScore)):
        metric = metric_cls(4)
        metric.update_state(truth, probs)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(metric.result_per_class()), scores[name], rtol=1e-6)
        assert float(metric.result()) == pytest.approx(scores[name][1:].mean())
        assert measure(metric_cls(4, class_id=2), truth, probs) == pytest.approx(scores[name][2])
    assert measure(PixelAccuracy(), truth, probs) == pytest.approx(np.mean(pred_labels == truth))
    # sigmoid mode: each channel against numpy's binary class 1
    masks = rng.random((2, 5, 5, 3)) > 0.5
    sig_probs = rng.random((2, 5, 5, 3)).astype("float32")
    for c in range(3):
        expected = segmentation_scores(sig_probs[..., c] > 0.5, masks[..., c], 2)["dice"][1]
        assert measure(DiceScore(3, mode="sigmoid", class_id=c), masks.astype("float32"), sig_probs) == \
            pytest.approx(expected)


# ---------------------------------------------------------------------------------- numpy helpers

def test_confusion_counts_by_hand():
    tp, fp, fn, tn = confusion_counts(PRED, TRUTH, 3)
    assert tp.tolist() == [7, 3, 3] and fp.tolist() == [2, 1, 0] and fn.tolist() == [1, 1, 1]
    assert tn.tolist() == [16 - 7 - 2 - 1, 16 - 3 - 1 - 1, 16 - 3 - 0 - 1]
    scores = segmentation_scores(PRED, TRUTH, 3)
    np.testing.assert_allclose(scores["dice"], DICE)
    np.testing.assert_allclose(scores["iou"], IOU)
    np.testing.assert_allclose(scores["precision"], [7 / 9, 3 / 4, 3 / 3])
    np.testing.assert_allclose(scores["recall"], [7 / 8, 3 / 4, 3 / 4])
    np.testing.assert_allclose(scores["accuracy"], [(7 + 6) / 16, (3 + 11) / 16, (3 + 12) / 16])
    # float label maps with whole values (as read from NIfTI) and pooling counts over cases
    assert confusion_counts(PRED.astype("float32"), TRUTH.astype("float64"), 3)[0].tolist() == [7, 3, 3]
    pooled = [a + b for a, b in zip(confusion_counts(PRED, TRUTH, 3), confusion_counts(TRUTH, TRUTH, 3))]
    assert score_from_counts("dice", *pooled)[1] == pytest.approx(2 * (3 + 4) / (2 * (3 + 4) + 1 + 1))


def test_numpy_helpers_reject_bad_labels():
    with pytest.raises(DataError, match=r"case_007/seg.nii.gz: prediction shape \(4, 4\) differs"):
        confusion_counts(PRED, np.zeros((2, 2)), 3, source="case_007/seg.nii.gz")
    with pytest.raises(DataError, match=r"true labels \[4\] are outside \[0, 4\)"):
        segmentation_scores(np.zeros(3, int), np.array([0, 2, 4]), 4)
    with pytest.raises(DataError, match="whole numbers"):
        confusion_counts(np.array([0.5, 1.0]), np.array([0, 1]), 2)
    with pytest.raises(ConfigError, match="num_classes"):
        confusion_counts(PRED, TRUTH, 0)
    with pytest.raises(ConfigError, match="score must be one of"):
        score_from_counts("f1", 1, 0, 0, 0)


def test_metric_argument_and_shape_errors():
    with pytest.raises(ConfigError, match="class_id"):
        DiceScore(3, class_id=3)
    with pytest.raises(ConfigError, match="threshold"):
        DiceScore(2, mode="sigmoid", threshold=1.0)
    with pytest.raises(ConfigError, match="mode"):
        IoUScore(2, mode="softmax2")
    with pytest.raises(ConfigError, match="num_classes >= 2"):
        DiceScore(1)
    with pytest.raises(ConfigError, match="built for num_classes=2 but y_pred has 3 channels"):
        DiceScore(2).update_state(TRUTH[None], probs_of(PRED[None], 3))


# ---------------------------------------------------------------------------------- serialization

@pytest.mark.parametrize("metric", [
    DiceScore(3, class_id=2, mode="sigmoid", threshold=0.3, from_logits=True, empty_value=0.0, name="dice_et"),
    IoUScore(4, include_background=True),
    PrecisionScore(2),
    RecallScore(2, name="sensitivity"),
    PixelAccuracy(mode="sigmoid", threshold=0.4),
])
def test_config_round_trip(metric):
    for restored in (type(metric).from_config(metric.get_config()),
                     keras.metrics.deserialize(keras.metrics.serialize(metric))):
        assert type(restored) is type(metric)
        assert restored.get_config() == metric.get_config()
        assert restored.name == metric.name


def test_compiled_model_with_metrics_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[DiceScore(3), IoUScore(3, class_id=1, name="iou_1"), PixelAccuracy()])
    x = np.random.default_rng(1).random((4, 6, 6, 1)).astype("float32")
    y = np.digitize(x[..., 0], [0.3, 0.6])
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    results = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert restored.evaluate(x, y, batch_size=1, verbose=0, return_dict=True) == pytest.approx(results)
    # the compiled Dice equals numpy's on the whole set
    pred_labels = np.argmax(model.predict(x, verbose=0), axis=-1)
    assert results["dice"] == pytest.approx(segmentation_scores(pred_labels, y, 3)["dice"][1:].mean(), rel=1e-5)


# ---------------------------------------------------------------------------------- tf.distribute

_DISTRIBUTED = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfseg.metrics import DiceScore, PixelAccuracy
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 3, size=(8, 6, 6)).astype("int32")
    probs = rng.random((8, 6, 6, 3)).astype("float32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        metrics = [DiceScore(3), PixelAccuracy()]
    data = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((truth, probs)).batch(4))

    @tf.function
    def step(y_true, y_pred):
        for m in metrics:
            m.update_state(y_true, y_pred)

    for y_true, y_pred in data:
        strategy.run(step, args=(y_true, y_pred))
    reference = [DiceScore(3), PixelAccuracy()]
    for m in reference:
        m.update_state(truth, probs)
    for m, r in zip(metrics, reference):
        print(m.name, float(m.result()), float(r.result()))
        assert abs(float(m.result()) - float(r.result())) < 1e-6
    print("OK")
""")


def test_update_under_tf_distribute_mirrored_strategy():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", _DISTRIBUTED], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("OK")
