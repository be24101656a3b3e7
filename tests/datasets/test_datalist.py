"""Clara/Decathlon datalist JSON: reading, validation messages, missing files, writing, splitting."""
import json
import os

import pytest

from tfseg.datasets.brats import BratsCase
from tfseg.datasets.datalist import (DatalistRecord, case_id_from_path, datalist_from_cases, read_datalist,
                                     write_datalist)
from tfseg.utils.problems import ProblemLog
from tfseg.errors import ConfigError, DataError

MODS = ("t1", "t1ce", "t2", "flair")


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return str(path)


def _write(path, obj):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def _brats_files(root, case_id):
    images = tuple(_touch(os.path.join(root, case_id, f"{case_id}_{m}.nii.gz")) for m in MODS)
    return images, _touch(os.path.join(root, case_id, f"{case_id}_seg.nii.gz"))


def test_read_resolves_relative_paths_against_the_json_folder(tmp_path):
    images, label = _brats_files(tmp_path, "BraTS2021_00000")
    _touch(os.path.join(tmp_path, "test", "c.nii.gz"))
    path = _write(tmp_path / "datalist.json", {
        "name": "BraTS", "labels": {"0": "background"},
        "training": [{"image": [os.path.relpath(p, tmp_path) for p in images],
                      "label": os.path.relpath(label, tmp_path)}],
        "validation": [{"image": images[3], "label": None, "id": "val-1"}],  # absolute path, explicit id
        "testing": ["test/c.nii.gz"]})
    data = read_datalist(path)
    assert list(data) == ["training", "validation", "testing"]
    assert data["training"] == [DatalistRecord("BraTS2021_00000", images, label)]
    assert data["validation"] == [DatalistRecord("val-1", (images[3],), None)]
    assert data["testing"][0].images == (os.path.join(tmp_path, "test", "c.nii.gz"),)
    assert data["testing"][0].case_id == "c"
    assert read_datalist(path, sections=["validation"]).keys() == {"validation"}


def test_base_dir_overrides_the_json_folder(tmp_path):
    images, label = _brats_files(tmp_path / "data", "a")
    (tmp_path / "configs").mkdir()
    entry = {"image": [f"a/a_{m}.nii.gz" for m in MODS], "label": "a/a_seg.nii.gz"}
    path = _write(tmp_path / "configs" / "list.json", {"training": [entry]})
    with pytest.raises(DataError, match=r"configs/a/a_t1.nii.gz: file listed .* not found"):
        read_datalist(path)
    record = read_datalist(path, base_dir=tmp_path / "data")["training"][0]
    assert record.images == images and record.label == label


def test_write_read_round_trip_with_relative_paths(tmp_path):
    inside = [BratsCase(f"BraTS2021_0000{k}", *_brats_files(tmp_path / "data", f"BraTS2021_0000{k}"))
              for k in range(3)]
    outside_images, outside_label = _brats_files(tmp_path.parent / f"{tmp_path.name}-elsewhere", "ext_case")
    sections = {"training": inside[:2] + [DatalistRecord("renamed", outside_images, outside_label)],
                "validation": [inside[2]],
                "testing": [DatalistRecord("t", (inside[0].images[3],), None)]}
    path = tmp_path / "data" / "datalist.json"
    write_datalist(path, sections)
    raw = json.loads(path.read_text())
    assert raw["training"][0]["image"][0] == "BraTS2021_00000/BraTS2021_00000_t1.nii.gz"
    assert raw["training"][0]["label"] == "BraTS2021_00000/BraTS2021_00000_seg.nii.gz"
    assert os.path.isabs(raw["training"][2]["image"][0]) and raw["training"][2]["id"] == "renamed"
    assert raw["testing"][0] == {"image": "BraTS2021_00000/BraTS2021_00000_flair.nii.gz", "id": "t"}
    assert "id" not in raw["training"][0]
    back = read_datalist(path)
    assert back["training"] == [DatalistRecord(c.case_id, c.images, c.label) for c in sections["training"]]
    assert back["validation"] == [DatalistRecord(inside[2].case_id, inside[2].images, inside[2].label)]
    assert back["testing"] == sections["testing"]
    # dicts are written too, with their paths made relative and other keys kept
    write_datalist(path, {"training": [{"image": inside[0].images[0], "label": None, "weight": 2}]})
    assert json.loads(path.read_text()) == {"training": [{"image": "BraTS2021_00000/BraTS2021_00000_t1.nii.gz",
                                                          "label": None, "weight": 2}]}
    assert not [n for n in os.listdir(path.parent) if n.startswith(".tmp-")]


@pytest.mark.parametrize("content, message", [
    ("{\"training\": [", r"datalist.json:1: not valid JSON"),
    ([1, 2], r"must be a JSON object"),
    ({"name": "x"}, r"no datalist sections: expected one of training"),
    ({"training": {"image": "a"}}, r"training: expected a list of entries, got dict"),
    ({"training": [{"image": "a.nii"}, {"image": "b.nii"}, {"image": "c.nii"}, {"image": 3}]},
     r"datalist.json: training\[3\].image: expected a path or a list of paths"),
    ({"training": [{"image": ["a.nii", ""]}]}, r"training\[0\].image: expected a path or a list of paths"),
    ({"training": [], "validation": [{"label": "a.nii"}]}, r"validation\[0\]: missing the 'image' key"),
    ({"training": [{"image": "a.nii", "label": ["x"]}]}, r"training\[0\].label: expected a path or null"),
    ({"training": [42]}, r"training\[0\]: expected an object with an 'image' key or a path, got int"),
    ({"training": [{"image": "a.nii", "id": [1]}]}, r"training\[0\].id: expected a string"),
])
def test_malformed_files_and_entries_name_section_and_index(tmp_path, content, message):
    path = _write(tmp_path / "datalist.json", content)
    with pytest.raises(DataError, match=message):
        read_datalist(path, check_files=False, on_error="skip")


def test_missing_section_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="datalist file not found"):
        read_datalist(tmp_path / "absent.json")
    path = _write(tmp_path / "d.json", {"training": []})
    with pytest.raises(DataError, match=r"no section 'validation'; sections present: training"):
        read_datalist(path, sections=["validation"])
    with pytest.raises(ConfigError, match="sections"):
        read_datalist(path, sections=[3])


def test_missing_files_follow_the_policy(tmp_path):
    images, label = _brats_files(tmp_path, "good")
    path = _write(tmp_path / "d.json", {"training": [
        {"image": [os.path.relpath(p, tmp_path) for p in images], "label": "good/good_seg.nii.gz"},
        {"image": [f"bad/bad_{m}.nii.gz" for m in MODS], "label": "bad/bad_seg.nii.gz"},
        {"image": "good/good_t1.nii.gz", "label": "nolabel.nii.gz"}]})
    with pytest.raises(DataError, match=r"bad_t1.nii.gz: file listed in .*d.json \(training\[1\].image\[0\]\) "
                                        r"not found, and 4 more"):
        read_datalist(path)
    log = ProblemLog("skip")
    data = read_datalist(path, problems=log)
    assert [r.case_id for r in data["training"]] == ["good"]
    assert [os.path.basename(p.path) for p in log.problems] == ["bad_t1.nii.gz", "nolabel.nii.gz"]
    assert "training[2].label" in log.problems[1].reason
    assert len(read_datalist(path, check_files=False)["training"]) == 3


def test_datalist_from_cases_splits_by_patient():
    cases = [BratsCase(f"BraTS2021_{k:05d}", tuple(f"{k}_{m}.nii.gz" for m in MODS), f"{k}_seg.nii.gz")
             for k in range(10)]
    parts = datalist_from_cases(cases, val_fraction=0.2, seed=3)
    assert list(parts) == ["training", "validation"]
    assert len(parts["training"]) == 8 and len(parts["validation"]) == 2
    assert sorted(parts["training"] + parts["validation"], key=lambda c: c.case_id) == cases
    assert datalist_from_cases(cases, val_fraction=0.2, seed=3) == parts
    assert datalist_from_cases(cases, val_fraction=0.2, seed=4) != parts
    with_test = datalist_from_cases(cases, val_fraction=0.2, test_fraction=0.1)
    assert [len(with_test[s]) for s in ("training", "validation", "testing")] == [7, 2, 1]


def test_write_rejects_bad_sections(tmp_path):
    with pytest.raises(ConfigError, match="dict of section"):
        write_datalist(tmp_path / "d.json", [1])
    with pytest.raises(ConfigError, match=r"training\[0\]: expected a dict or a record"):
        write_datalist(tmp_path / "d.json", {"training": [3]})
    with pytest.raises(ConfigError, match=r"training\[0\]: a datalist entry needs an 'image' key"):
        write_datalist(tmp_path / "d.json", {"training": [{"label": "x"}]})
    assert not os.path.exists(tmp_path / "d.json")


def test_case_id_from_path():
    assert case_id_from_path("x/Brats18_TCIA01_131_1_t1ce.nii.gz") == "Brats18_TCIA01_131_1"
    assert case_id_from_path("imagesTr/BRATS_001.nii.gz") == "BRATS_001"
    assert case_id_from_path("scan.mha") == "scan"
