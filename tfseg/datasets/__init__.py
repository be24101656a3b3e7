"""Dataset layouts on disk: finders that yield typed records (paths + ids), never tensors.

Importing this package is light (no TensorFlow, no pixel reading). The names below are loaded
from their modules on first use:

- `tfseg.utils.problems`: the `on_error` policy and `ProblemLog`;
- `tfseg.datasets.splits`: `split_by_group`, `split_by_patient`, `Split`;
- `tfseg.datasets.sunnybrook`: `find_sunnybrook`, `SunnybrookRecord`, `SAX_SERIES`, `load_sample`;
- `tfseg.datasets.brats`: `find_brats`, `BratsCase`, `MODALITIES`, `LABELS`, `REGIONS`;
- `tfseg.datasets.lgg`: `find_lgg`, `LggRecord` (Kaggle lgg-mri-segmentation, or train_image/train_mask);
- `tfseg.datasets.rsna`: `find_rsna`, `RsnaPatient`, `read_labels`, `split_patients`, `MRI_TYPES`
  (RSNA-MICCAI task 2: MGMT labels, DICOM series per MRI type) and `tfseg.datasets.synthetic_rsna`:
  `write_rsna`, `ensure_rsna`;
- `tfseg.datasets.rtstruct`: `find_rtstruct_cases`, `RtstructRecord`, `load_case` (DICOM series
  labelled by RT structure sets);
- `tfseg.datasets.datalist`: `read_datalist`, `write_datalist`, `datalist_from_cases`, `DatalistRecord`;
- `tfseg.datasets.synthetic`: `write_sunnybrook`, `ensure_sunnybrook`, `write_brats`, `ensure_brats`
  and `tfseg.datasets.synthetic_lgg`: `write_lgg`, `ensure_lgg` (the embedded default data).
- `tfseg.datasets.synthetic_mni`: `write_mni_brats` (BraTS layout from nilearn's MNI152 template);
- `tfseg.datasets.fingerprint`: `Fingerprint` (the function `fingerprint` is in the module, `tfseg inspect`);
  `tfseg.datasets.settings`: `suggest_settings`, `Settings` (sizes from a fingerprint and a memory budget).

Example:
    >>> from tfseg.datasets import split_by_group
    >>> split_by_group(["a1", "a2", "b1"], ["a", "a", "b"], val_fraction=0.5).val in (["a1", "a2"], ["b1"])
    True
"""
from tfseg.utils.lazy import lazy_attributes

_LAZY = {
    "ProblemLog": "tfseg.utils.problems",
    "Problem": "tfseg.utils.problems",
    "Split": "tfseg.datasets.splits",
    "split_by_group": "tfseg.datasets.splits",
    "split_by_patient": "tfseg.datasets.splits",
    "SAX_SERIES": "tfseg.datasets.sunnybrook",
    "SunnybrookRecord": "tfseg.datasets.sunnybrook",
    "canonical_case": "tfseg.datasets.sunnybrook",
    "find_sunnybrook": "tfseg.datasets.sunnybrook",
    "BratsCase": "tfseg.datasets.brats",
    "LABELS": "tfseg.datasets.brats",
    "MODALITIES": "tfseg.datasets.brats",
    "REGIONS": "tfseg.datasets.brats",
    "find_brats": "tfseg.datasets.brats",
    "LggRecord": "tfseg.datasets.lgg",
    "find_lgg": "tfseg.datasets.lgg",
    "SyntheticLgg": "tfseg.datasets.synthetic_lgg",
    "write_lgg": "tfseg.datasets.synthetic_lgg",
    "ensure_lgg": "tfseg.datasets.synthetic_lgg",
    "RtstructRecord": "tfseg.datasets.rtstruct",
    "find_rtstruct_cases": "tfseg.datasets.rtstruct",
    "DatalistRecord": "tfseg.datasets.datalist",
    "datalist_from_cases": "tfseg.datasets.datalist",
    "read_datalist": "tfseg.datasets.datalist",
    "write_datalist": "tfseg.datasets.datalist",
    "MRI_TYPES": "tfseg.datasets.rsna",
    "RsnaPatient": "tfseg.datasets.rsna",
    "find_rsna": "tfseg.datasets.rsna",
    "read_labels": "tfseg.datasets.rsna",
    "split_patients": "tfseg.datasets.rsna",
    "SyntheticRsna": "tfseg.datasets.synthetic_rsna",
    "write_rsna": "tfseg.datasets.synthetic_rsna",
    "ensure_rsna": "tfseg.datasets.synthetic_rsna",
    "SyntheticBrats": "tfseg.datasets.synthetic",
    "write_brats": "tfseg.datasets.synthetic",
    "ensure_brats": "tfseg.datasets.synthetic",
    "SyntheticSunnybrook": "tfseg.datasets.synthetic",
    "write_sunnybrook": "tfseg.datasets.synthetic",
    "ensure_sunnybrook": "tfseg.datasets.synthetic",
    "write_mni_brats": "tfseg.datasets.synthetic_mni",
    "Fingerprint": "tfseg.datasets.fingerprint",
    "Settings": "tfseg.datasets.settings",
    "suggest_settings": "tfseg.datasets.settings",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(globals(), _LAZY)
