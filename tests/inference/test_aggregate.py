"""Patient aggregation of chunk probabilities, and ROC AUC against scikit-learn."""
import numpy as np
import pytest

from tfseg.errors import ConfigError
from tfseg.inference.aggregate import mean_by_group
from tfseg.metrics import roc_auc


def test_patient_mean_by_hand():
    probs = [0.1, 0.5, 0.3, 0.8, 0.6, 0.2]
    patients = ["00012", "00003", "00012", "00003", "00003", "00007"]
    means = mean_by_group(probs, patients)
    assert list(means) == ["00012", "00003", "00007"]
    assert means["00012"] == pytest.approx((0.1 + 0.3) / 2)
    assert means["00003"] == pytest.approx((0.5 + 0.8 + 0.6) / 3)
    assert means["00007"] == pytest.approx(0.2)
    with pytest.raises(ConfigError):
        mean_by_group([0.1], ["a", "b"])


def test_roc_auc_against_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for size in (5, 17, 200):
        labels = rng.integers(0, 2, size)
        labels[:2] = [0, 1]
        scores = np.round(rng.random(size) + 0.3 * labels, 1)   # rounding makes ties
        assert roc_auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_by_hand_and_errors():
    assert roc_auc([0, 1], [0.2, 0.9]) == 1.0
    assert roc_auc([0, 1], [0.9, 0.2]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ConfigError):
        roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ConfigError):
        roc_auc([0, 2], [0.2, 0.3])
