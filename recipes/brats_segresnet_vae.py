"""3D brain-tumour segmentation (BraTS) with SegResNet and its VAE branch (Myronenko 2018).

On the built-in synthetic BraTS dataset (4 NIfTI modalities + labels, written on the fly):

    python recipes/brats_segresnet_vae.py

On BraTS 2018-2021 data, from a Clara/Decathlon datalist or a release folder, with the paper's
sizes (a GPU job):

    python recipes/brats_segresnet_vae.py --paper --datalist datalist.json
    python recipes/brats_segresnet_vae.py --paper --data-dir MICCAI_BraTS2020_TrainingData

Fine-tune a trained model on new cases, with the encoder frozen for the first 10 epochs:

    python recipes/brats_segresnet_vae.py --datalist new.json --weights runs/brats/model.keras \\
        --freeze-epochs 10

The defaults are sized for a 2-core CPU (8 initial filters, 32x48x48 crops of 48x64x64 volumes).
Writes checkpoints, `predictions/<case>_seg.nii.gz` (BraTS labels 1/2/4 on the input's affine),
`overlays/<case>.png`, `model.keras`, `saved_model/` and `metrics.json` to `--output-dir`.
"""

import sys

from tfseg.workflows.entry import workflow_main


def main(argv=None):
    return workflow_main("brats", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
