"""The MNI152-based BraTS writer: layout, geometry from nilearn's template, nested labels, determinism."""
import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import load_mni152_template

from tfseg.datasets.brats import find_brats
from tfseg.datasets.datalist import read_datalist
from tfseg.datasets.synthetic_mni import write_mni_brats
from tfseg.errors import ConfigError, DataError

SPACING = (7.0, 6.0, 5.0)   # memory order (dz, dy, dx)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return write_mni_brats(tmp_path_factory.mktemp("mni"), num_cases=4, seed=11, spacing=SPACING)


def _load(path):
    image = nib.load(path)
    return np.asarray(image.dataobj), image


def test_layout_and_datalist(ds):
    cases = find_brats(ds.root)
    assert [c.case_id for c in cases] == [f"BraTS2021_{k:05d}" for k in range(4)]
    sections = read_datalist(ds.datalist)
    assert sorted(r.case_id for s in sections.values() for r in s) == [c.case_id for c in cases]
    assert len(sections["validation"]) == 1


def test_geometry_follows_the_template(ds):
    template = load_mni152_template(resolution=2)
    label, image = _load(ds.cases[0].label)
    zooms = image.header.get_zooms()
    assert np.allclose(zooms, SPACING[::-1])                     # NIfTI (x, y, z) = memory reversed
    extent = np.array(template.shape) * 2.0                     # 198 x 234 x 190 mm
    assert np.allclose(np.array(label.shape) * zooms, extent, atol=np.array(zooms))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    # the field-of-view centre stays where the template's is
    centre = lambda aff, shape: aff[:3, :3] @ ((np.array(shape) - 1) / 2) + aff[:3, 3]
    assert np.allclose(centre(image.affine, label.shape), centre(template.affine, template.shape), atol=1e-6)
    for path in ds.cases[0].images:
        assert np.allclose(nib.load(path).affine, image.affine) and nib.load(path).shape == label.shape


def test_tumours_nest_inside_the_brain_and_vary(ds):
    sizes, centres = [], []
    for case in ds.cases:
        label, _ = _load(case.label)
        flair, _ = _load(case.images[3])
        assert set(np.unique(label).tolist()) <= {0, 1, 2, 4}
        assert np.all(flair[label > 0] != 0)                      # tumour inside the brain
        assert np.all(flair[_load(case.images[0])[0] == 0] == 0)  # one brain mask for all modalities
        wt, tc, et = label > 0, np.isin(label, (1, 4)), label == 4
        assert tc.sum() < wt.sum() and et.sum() <= tc.sum() and tc.any()
        assert _load(case.images[0])[0].dtype == np.int16
        sizes.append(int(wt.sum()))
        centres.append(np.argwhere(wt).mean(axis=0))
    assert len(set(sizes)) == len(sizes)
    assert max(np.linalg.norm(a - b) for a in centres for b in centres) > 2


def test_deterministic_and_case_independent(ds, tmp_path):
    again = write_mni_brats(tmp_path / "again", num_cases=2, seed=11, spacing=SPACING)
    for a, b in zip(ds.cases[:2], again.cases):
        assert np.array_equal(_load(a.label)[0], _load(b.label)[0])
        assert np.array_equal(_load(a.images[2])[0], _load(b.images[2])[0])
    other = write_mni_brats(tmp_path / "other", num_cases=1, seed=12, spacing=SPACING)
    assert not np.array_equal(_load(other.cases[0].label)[0], _load(ds.cases[0].label)[0])


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="num_cases"):
        write_mni_brats(tmp_path, num_cases=0)
    with pytest.raises(ConfigError, match="spacing"):
        write_mni_brats(tmp_path, spacing=0.1)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="empty folder"):
        write_mni_brats(tmp_path, num_cases=1, spacing=8.0)


def test_harder_variant_several_lesions_and_soft_borders(tmp_path):
    from scipy import ndimage

    hard = write_mni_brats(tmp_path / "hard", num_cases=3, seed=2, spacing=SPACING, radius_mm=(10, 16),
                           max_lesions=3, soft_border=1.0, intensity_jitter=0.25)
    sharp = write_mni_brats(tmp_path / "sharp", num_cases=3, seed=2, spacing=SPACING, radius_mm=(10, 16),
                            max_lesions=3)
    components = []
    for soft_case, sharp_case in zip(hard.cases, sharp.cases):
        label, _ = _load(soft_case.label)
        assert set(np.unique(label).tolist()) <= {0, 1, 2, 4}
        assert np.array_equal(label, _load(sharp_case.label)[0])        # the same tumours, only the images differ
        components.append(ndimage.label(label > 0)[1])
        # soft borders: FLAIR just outside the tumour is pulled towards the oedema's brightness
        flair_soft, flair_sharp = _load(soft_case.images[3])[0], _load(sharp_case.images[3])[0]
        ring = ndimage.binary_dilation(label > 0) & ~(label > 0) & (flair_sharp > 0)
        assert ring.any() and not np.array_equal(flair_soft[ring], flair_sharp[ring])
    assert max(components) >= 2
    with pytest.raises(ConfigError, match="max_lesions"):
        write_mni_brats(tmp_path / "bad", max_lesions=0)
