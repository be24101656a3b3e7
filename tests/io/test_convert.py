"""Tests for tfseg.io.convert and tools/dicom2nifti.py: DICOM series -> NIfTI (+ resampling)."""
import argparse
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.io.convert import add_convert_arguments, convert_dicom_series, run_convert
from tfseg.io.dicom import read_series, write_image
from tfseg.io.nifti import read_nifti

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")

TOOL = Path(__file__).resolve().parents[2] / "tools" / "dicom2nifti.py"
UID = "1.2.826.0.1.3680043.8.498.10"


def _series(folder, labels=False, count=5):
    """An axial series, 1 x 0.5 mm pixels, 2 mm slices; labels 0/1/2/4 or an int16 ramp."""
    rng = np.random.default_rng(4)
    for k in range(count):
        if labels:
            pixels = rng.choice(np.array([0, 1, 2, 4], np.int16), size=(6, 8))
        else:
            pixels = (np.arange(48).reshape(6, 8) + 10 * k).astype(np.int16)
        write_image(Path(folder) / f"{(7 * k) % count}.dcm", pixels, series_instance_uid=UID,
                    image_position=(-20.0, 10.0, 2.0 * k), pixel_spacing=(1.0, 0.5))
    return Path(folder)


def test_convert_without_resampling_is_the_series(tmp_path):
    folder = _series(tmp_path / "dcm")
    out = convert_dicom_series(folder, tmp_path / "image.nii.gz")
    assert out == tmp_path / "image.nii.gz"
    volume, series = read_nifti(out), read_series(folder)
    np.testing.assert_array_equal(volume.array, series.array)
    assert volume.array.dtype == np.int16
    np.testing.assert_allclose(volume.affine, series.affine, atol=1e-6)
    header = nib.load(out).header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1


def test_convert_with_resampling_images_and_labels(tmp_path):
    folder = _series(tmp_path / "dcm")
    out = convert_dicom_series(folder, tmp_path / "iso.nii", spacing=1.0)
    volume = read_nifti(out)
    assert volume.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert volume.shape == (10, 6, 4)
    assert volume.array.dtype == np.float32
    assert not np.array_equal(volume.array, np.round(volume.array))  # interpolated values
    series = read_series(folder)
    centre = lambda v: v.world((np.array(v.shape) - 1) / 2)  # noqa: E731
    np.testing.assert_allclose(centre(volume), centre(series), atol=1e-5)

    labels = _series(tmp_path / "seg", labels=True)
    out = convert_dicom_series(labels, tmp_path / "seg.nii.gz", spacing=(1.0, 0.5, 0.25),
                               label=True)
    volume = read_nifti(out)
    assert volume.array.dtype == np.int16
    assert set(np.unique(volume.array)) == {0, 1, 2, 4}
    assert volume.shape == (10, 12, 16)


def test_convert_errors(tmp_path):
    folder = _series(tmp_path / "dcm")
    with pytest.raises(DataError, match="no series with SeriesInstanceUID"):
        convert_dicom_series(folder, tmp_path / "x.nii.gz", series_instance_uid="1.2.3")
    with pytest.raises(ConfigError, match=".nii or .nii.gz"):
        convert_dicom_series(folder, tmp_path / "x.nrrd")
    with pytest.raises(ConfigError, match="spacing"):
        convert_dicom_series(folder, tmp_path / "x.nii", spacing=(1.0, 2.0))
    assert not list(tmp_path.glob("x*"))


def test_cli_arguments_are_x_y_z(tmp_path):
    folder = _series(tmp_path / "dcm")
    parser = add_convert_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(folder), str(tmp_path / "o.nii.gz"), "--spacing", "0.25", "1",
                              "2", "--series", UID])
    volume = read_nifti(run_convert(args))
    assert volume.spacing == pytest.approx((2.0, 1.0, 0.25))  # (dz, dy, dx) = reversed X Y Z
    args = parser.parse_args([str(folder), str(tmp_path / "o.nii.gz"), "--spacing", "1", "2"])
    with pytest.raises(ConfigError, match="one value or three"):
        run_convert(args)


def test_tool_script(tmp_path):
    result = subprocess.run([sys.executable, str(TOOL), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert "--spacing" in result.stdout and "--label" in result.stdout
    folder = _series(tmp_path / "dcm", labels=True)
    out = tmp_path / "seg.nii.gz"
    result = subprocess.run([sys.executable, str(TOOL), str(folder), str(out), "--spacing", "1",
                             "--label"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert set(np.unique(read_nifti(out).array)) <= {0, 1, 2, 4}
    result = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "none"), str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "folder not found" in result.stderr
