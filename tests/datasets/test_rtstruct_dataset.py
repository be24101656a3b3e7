"""Tests for tfseg.datasets.rtstruct: series + RTSTRUCT pairs into records, the name report."""
import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.datasets.rtstruct import find_rtstruct_cases, load_case, normalize_class_table
from tfseg.io.dicom import write_image
from tfseg.io.rtstruct import write_rtstruct
from tfseg.utils.problems import ProblemLog

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CLASSES = {"Heart": 1, "Lt Lung": 2, "Lung_L": 2}


def _case(root, name, roi_names, series_uid, shape=(3, 10, 12)):
    """A CT series of `shape` and a structure set with one blob per ROI name (labels 1, 2, ...)."""
    for k in range(shape[0]):
        write_image(root / name / "ct" / f"{k}.dcm", np.full(shape[1:], k, np.int16),
                    modality="CT", study_instance_uid=series_uid + ".9",
                    series_instance_uid=series_uid, image_position=(0, 0, 2.0 * k))
    labels = np.zeros(shape, np.uint8)
    for value in range(1, len(roi_names) + 1):
        labels[value % shape[0], value:value + 3, 2 * value:2 * value + 4] = value
    write_rtstruct(labels, root / name / "ct", root / name / "rs.dcm", list(roi_names))
    return (root / name / "ct", root / name / "rs.dcm"), labels


def test_pairs_become_records_with_a_name_report(tmp_path):
    a, labels_a = _case(tmp_path, "a", ["HEART", "lt lung", "Couch"], "1.2.826.0.1.3680043.8.498.1")
    b, _ = _case(tmp_path, "b", ["heart", "LUNG_L", "Couch", "Body"], "1.2.826.0.1.3680043.8.498.2")
    c, _ = _case(tmp_path, "c", ["Heart", "Body"], "1.2.826.0.1.3680043.8.498.3")  # no lung
    found = find_rtstruct_cases({"A": a, "B": b, "C": c}, CLASSES)
    assert [r.case_id for r in found.records] == ["A", "B"]
    assert found.records[0].rois == (("HEART", 1), ("lt lung", 2))
    assert found.records[1].rois == (("heart", 1), ("LUNG_L", 2))
    assert found.unmatched == {"Couch": ["A", "B"], "Body": ["B", "C"]}
    assert found.missing == {2: ["C"]}
    assert len(found.problems) == 1
    assert "no ROI for class(es) [2]" in found.problems.problems[0].reason
    report = found.report()
    assert "'Couch': 2 case(s)" in report and "class 2: C" in report and "1 skipped" in report
    volume, labels = load_case(found.records[0])
    assert volume.shape == labels.shape == (3, 10, 12)
    assert np.array_equal(labels, np.where(labels_a == 3, 0, labels_a))  # Couch not in the table
    # Kept with the classes it has when not every class is required.
    lenient = find_rtstruct_cases([c], CLASSES, require_all=False)
    assert lenient.records[0].rois == (("Heart", 1),) and lenient.missing == {2: ["ct"]}


def test_bad_pairs_follow_on_error(tmp_path):
    a, _ = _case(tmp_path, "a", ["Heart", "Lt Lung"], "1.2.826.0.1.3680043.8.498.1")
    b, _ = _case(tmp_path, "b", ["Heart", "Lt Lung"], "1.2.826.0.1.3680043.8.498.2")
    crossed = (a[0], b[1])  # the structure set of case b with the series of case a
    not_rtstruct = (a[0], next(a[0].iterdir()))
    log = ProblemLog("skip")
    found = find_rtstruct_cases([a, crossed, not_rtstruct], CLASSES, problems=log)
    assert len(found.records) == 1 and len(log) == 2
    assert "refers to series ['1.2.826.0.1.3680043.8.498.2']" in log.problems[0].reason
    assert "not an RT Structure Set" in log.problems[1].reason
    with pytest.raises(DataError, match="refers to series"):
        find_rtstruct_cases([a, crossed], CLASSES, on_error="raise")
    with pytest.raises(DataError, match="no usable series"):
        find_rtstruct_cases([crossed], CLASSES)


def test_class_table_is_checked():
    assert normalize_class_table({" HEART ": 1, "heart": 1}) == {"heart": 1}
    with pytest.raises(ConfigError, match="two classes"):
        normalize_class_table({"Heart": 1, "HEART": 2})
    with pytest.raises(ConfigError, match=">= 1"):
        normalize_class_table({"Heart": 0})
    with pytest.raises(ConfigError, match="non-empty dict"):
        normalize_class_table({})
