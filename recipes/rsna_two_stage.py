"""MGMT methylation status from brain MR series in two stages (RSNA-MICCAI 2021): UNet++ masks, then CNN + BiLSTM.

On the built-in synthetic data (BraTS task-1 NIfTI volumes for stage 1, task-2 DICOM series with a
labels CSV for stage 2, written on the fly):

    python recipes/rsna_two_stage.py

On the real releases, with the published sizes, on a GPU:

    python recipes/rsna_two_stage.py --paper --brats-dir BraTS2021_Training_Data \\
        --data-dir rsna-miccai-brain-tumor-radiogenomic-classification

A control run, labels shuffled among patients (the patient AUC should then be about 0.5):

    python recipes/rsna_two_stage.py --shuffle-labels --output-dir runs/rsna_control

The defaults are sized for a 2-core CPU: stage 1 is UNet++ with a ResNet18 encoder (random weights,
narrow decoder; DenseNet121's 426 layers alone take minutes to trace on a shared 2-core machine,
`--paper` uses it) on axial single-series slices of 48x48x24 volumes resized to 64x64; stage 2
keeps 48x48 slices in chunks of 8 every 2 and a small CNN backbone (`small_cnn`) under the
BiLSTM(64). `--paper` selects the seed's sizes: 224x224 slices in three planes, ImageNet
DenseNet121 frozen for 10 epochs then 200 epochs in all; chunks of 35 every 5, a ResNet50V2 backbone from ImageNet (the stand-in for the
seed's NFNet), 5 warm-up epochs. The steps are those of `tfseg.workflows.rsna.run`; the outputs
in `--output-dir` are `stage1/` (model.keras, saved_model/, metrics.json), `stage2/<MRI type>/`
(model.keras, saved_model/, history), `metrics.json` (`patient_auc`, `chunk_auc`, per type),
`val_predictions.csv` and `submission.csv`.
"""
import sys

from tfseg.workflows.entry import workflow_main


def main(argv=None):
    return workflow_main("rsna", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
