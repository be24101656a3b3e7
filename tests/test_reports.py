import json
import math

import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.reports import format_report, per_class_report, report_from_batches, report_from_counts
from tfseg.utils.atomic import atomic_write_json

TRUTH = np.array([[0, 1, 1],
                  [0, 0, 2]])
PRED = np.array([[0, 1, 0],
                 [0, 2, 2]])
NAMES = ["background", "edema", "tumor"]


def manual_counts(pred, truth, label):
    p, t = pred.ravel() == label, truth.ravel() == label
    return int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t)), int(np.sum(~p & ~t))


def test_hand_computed_report():
    report = per_class_report(PRED, TRUTH, NAMES)
    # pixels (truth, pred): (0,0) (1,1) (1,0) (0,0) (0,2) (2,2)
    expected = {
        "background": dict(tp=2, fp=1, fn=1, tn=2, precision=2 / 3, recall=2 / 3, accuracy=4 / 6, iou=2 / 4,
                           dice=4 / 6, support=3),
        "edema": dict(tp=1, fp=0, fn=1, tn=4, precision=1.0, recall=0.5, accuracy=5 / 6, iou=0.5, dice=2 / 3,
                      support=2),
        "tumor": dict(tp=1, fp=1, fn=0, tn=4, precision=0.5, recall=1.0, accuracy=5 / 6, iou=0.5, dice=2 / 3,
                      support=1),
    }
    for label, name in enumerate(NAMES):
        row = report["classes"][name]
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == manual_counts(PRED, TRUTH, label)
        for key, value in expected[name].items():
            assert row[key] == pytest.approx(value), (name, key)
    assert report["mean"]["dice"] == pytest.approx(2 / 3)
    assert report["mean"]["precision"] == pytest.approx(0.75) and report["mean"]["support"] == 3
    assert report["num_pixels"] == 6


def test_batches_equal_whole_set_and_accept_varying_shapes():
    rng = np.random.default_rng(0)
    truths = [rng.integers(0, 4, (5, 7)) for _ in range(4)] + [rng.integers(0, 4, (3, 2, 2))]
    preds = [np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, 4, t.shape)) for t in truths]
    names = ["bg", "ncr", "ed", "et"]
    streamed = report_from_batches(((p, t) for p, t in zip(preds, truths)), 4, names)
    whole = per_class_report(np.concatenate([p.ravel() for p in preds]), np.concatenate([t.ravel() for t in truths]),
                             names)
    assert streamed == whole
    assert per_class_report(preds, truths, names) == whole
    for label, name in enumerate(names):
        p, t = np.concatenate([x.ravel() for x in preds]), np.concatenate([x.ravel() for x in truths])
        tp, fp, fn, tn = manual_counts(p, t, label)
        assert whole["classes"][name]["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert whole["classes"][name]["support"] == tp + fn


def test_empty_classes_no_nan_crash():
    truth = np.zeros((2, 3), int)
    truth[0, 0] = 1
    pred = np.zeros((2, 3), int)                  # class 1 never predicted; class 2 absent from both
    with np.errstate(all="raise"):                # no division warnings either
        report = per_class_report(pred, truth, ["bg", "a", "b"])
    a, b = report["classes"]["a"], report["classes"]["b"]
    assert a["precision"] == 0.0 and a["recall"] == 0.0 and a["dice"] == 0.0 and a["accuracy"] == 5 / 6
    assert b["dice"] == 1.0 and b["precision"] == 1.0 and b["support"] == 0
    assert report["mean"]["dice"] == 0.5

    nan_report = per_class_report(pred, truth, ["bg", "a", "b"], empty_value=float("nan"))
    assert math.isnan(nan_report["classes"]["b"]["dice"]) and nan_report["mean"]["dice"] == 0.0
    assert "n/a" in format_report(nan_report).splitlines()[3]


def test_format_report_alignment_and_json(tmp_path):
    text = format_report(per_class_report(PRED, TRUTH, NAMES), digits=2)
    lines = text.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "accuracy", "iou", "dice", "support"]
    assert lines[2].split() == ["edema", "1.00", "0.50", "0.83", "0.50", "0.67", "2"]
    assert lines[-1].startswith("mean (fg)")
    assert len({len(line) for line in lines}) == 1          # right-aligned columns
    atomic_write_json(tmp_path / "report.json", per_class_report(PRED, TRUTH, NAMES))
    assert json.loads((tmp_path / "report.json").read_text())["classes"]["tumor"]["support"] == 1


def test_errors():
    with pytest.raises(DataError, match=r"batch 1: true labels \[3, 4\] are outside"):
        report_from_batches([(PRED, TRUTH), (PRED, TRUTH + 2)], 3, NAMES)
    with pytest.raises(DataError, match="differs from truth shape"):
        per_class_report(PRED[:, :2], TRUTH, NAMES)
    with pytest.raises(ConfigError, match="no .prediction, truth. pairs"):
        report_from_batches(iter([]), 3, NAMES)
    with pytest.raises(ConfigError, match="for num_classes=2"):
        report_from_batches([(PRED, TRUTH)], 2, NAMES)
    with pytest.raises(ConfigError, match="unique"):
        per_class_report(PRED, TRUTH, ["a", "a", "b"])
    with pytest.raises(ConfigError, match="at least 2 classes"):
        report_from_counts([1], [0], [0], [0], ["only"])
