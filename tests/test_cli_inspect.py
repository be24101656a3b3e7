"""`tfseg inspect`: the report, the JSON, and the exit code on problems."""
import json
import pathlib

import nibabel as nib
import numpy as np

from tfseg.cli import main
from tfseg.datasets.synthetic_mni import write_mni_brats


def test_inspect_clean_set_exits_zero(tmp_path, capsys):
    ds = write_mni_brats(tmp_path / "data", num_cases=2, seed=1, spacing=8.0)
    assert main(["inspect", ds.root]) == 0
    out = capsys.readouterr().out
    assert "brats, 3D" in out and "problems: 0" in out
    assert main(["inspect", ds.root, "--json", "--out", str(tmp_path / "fp.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "fp.json").read_text())
    assert printed["num_items"] == 2 and set(printed["labels"]) == {"0", "1", "2", "4"}


def test_inspect_reports_flip_unknown_label_and_split_leak(tmp_path, capsys):
    ds = write_mni_brats(tmp_path / "data", num_cases=4, seed=2, spacing=8.0)
    for path in ds.cases[1].images + (ds.cases[1].label,):     # stored flipped along y: RPS
        image = nib.load(path)
        flip = np.diag([1.0, -1.0, 1.0, 1.0])
        flip[1, 3] = image.shape[1] - 1
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:, ::-1], image.affine @ flip, image.header), path)
    label = nib.load(ds.cases[2].label)
    data = np.asarray(label.dataobj).copy()
    data[data == 1] = 3                                          # a BraTS-2017 style label
    nib.save(nib.Nifti1Image(data, label.affine, label.header), ds.cases[2].label)
    sections = json.loads(pathlib.Path(ds.datalist).read_text())
    sections["validation"].append(sections["training"][0])
    pathlib.Path(ds.datalist).write_text(json.dumps(sections))

    assert main(["inspect", ds.datalist, "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert sorted(p["kind"] for p in problems) == ["labels", "orientation", "split"]
    assert main(["inspect", ds.datalist]) == 1
    text = capsys.readouterr().out
    assert "[orientation] BraTS2021_00001" in text and "RPS" in text
    assert "label values [3]" in text and "several datalist sections" in text


def test_inspect_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_inspect_sunnybrook_pair_of_folders(tmp_path, capsys):
    from tfseg.datasets.synthetic import write_sunnybrook

    ds = write_sunnybrook(tmp_path / "sb", num_cases=1, images_per_case=2, contoured_per_case=2, image_size=32)
    assert main(["inspect", ds.image_dir, ds.contour_dir, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["kind"], printed["spatial_dims"], printed["num_items"]) == ("sunnybrook", 2, 2)
