"""`tfseg predict RUN_DIR INPUT OUTPUT` and `tfseg.predict(...)`: a run's model on new, unlabelled inputs.

The run's `config.json` says which workflow trained it. A workflow that predicts with more than one
call of its model (BraTS 3D: sliding windows over the brain, sized for inference; BraTS-2D: each
slice tiled in patches) provides `predict_fn(config, model)`, and predictions go through exactly
the path its evaluation used, so they are what the run's metrics describe. The other workflows
predict through the run's SavedModel (`tfseg.inference.predictor.predict_run`), whose signature
holds the whole preprocessing. Outputs follow the dataset's convention, on the input's grid
(`tfseg.inference.predictor.write_prediction`).

Example:
    >>> sorted(WORKFLOW_MODULES)[:2]
    ['brats', 'brats2d']
"""
import importlib
import json
import logging
import os

import numpy as np

from tfseg.errors import DataError

logger = logging.getLogger(__name__)

#: The workflow named in a run's SavedModel metadata -> its module.
WORKFLOW_MODULES = {"brats": "tfseg.workflows.brats", "brats2d": "tfseg.workflows.brats2d",
                    "brats_slices": "tfseg.workflows.brats_slices", "lgg": "tfseg.workflows.lgg",
                    "sunnybrook": "tfseg.workflows.sunnybrook"}


def run_workflow(run_dir):
    """`(workflow name, module, config)` of a training run folder, from its SavedModel metadata and config.json.

    Module and config are None when the run's workflow is unknown or it has no `config.json`
    (then the SavedModel alone predicts).

    Raises:
        DataError: the folder has no `saved_model/`.
    """
    from tfseg.inference.predictor import METADATA_FILE
    from tfseg.training.config import from_dict

    if not os.path.isdir(os.path.join(run_dir, "saved_model")):
        raise DataError(run_dir, "no saved_model/ folder: pass the output folder of a finished training run")
    metadata_path = os.path.join(run_dir, "saved_model", METADATA_FILE)
    config_path = os.path.join(run_dir, "config.json")
    workflow = None
    if os.path.isfile(metadata_path):
        with open(metadata_path) as stream:
            workflow = (json.load(stream).get("extra") or {}).get("workflow")
    if workflow not in WORKFLOW_MODULES or not os.path.isfile(config_path):
        return workflow, None, None  # predicted through the SavedModel alone
    module = importlib.import_module(WORKFLOW_MODULES[workflow])
    with open(config_path) as stream:
        config = from_dict(module.CONFIG_CLASS, json.load(stream), where=config_path)
    return workflow, module, config


#: BraTS label values -> names, for DICOM SEG segments and RTSTRUCT ROIs.
BRATS_LABEL_NAMES = {1: "necrotic tumour core", 2: "peritumoral edema", 4: "enhancing tumour"}


def label_names(run_dir):
    """`{label value: name}` of a run's predictions, from its SavedModel metadata (BraTS: 1/2/4).

    Example:
        >>> label_names("/nonexistent-run")
        {1: 'foreground'}
    """
    from tfseg.inference.predictor import METADATA_FILE

    try:
        with open(os.path.join(run_dir, "saved_model", METADATA_FILE)) as stream:
            metadata = json.load(stream)
    except OSError:
        return {1: "foreground"}
    names = list(metadata.get("class_names") or ())
    if metadata.get("label_map") == "brats":
        return dict(BRATS_LABEL_NAMES)
    values = (metadata.get("extra") or {}).get("label_values")
    if metadata.get("activation", "softmax") == "softmax" and names:
        values = values or list(range(len(names)))
        return {int(v): name for v, name in zip(values[1:], names[1:])}
    return {1: names[0] if names else "foreground"}


def write_clinical_objects(labels, item, output_dir, names, dicom_seg=True, rtstruct=True):
    """A DICOM SEG and/or an RTSTRUCT for a prediction on a DICOM series, referencing that series.

    Args:
        labels: the integer label map `(D, H, W)` on the series' grid, or `(D, H, W, K)` binary
            channels (label k + 1 for channel k).
        item: the predictor's input item (`kind == "dicom_series"`).
        output_dir: where `<name>_seg.dcm` and `<name>_rtstruct.dcm` go.
        names: `{label value: name}`.
        dicom_seg, rtstruct: which objects to write.

    Returns:
        The paths written (none for an empty prediction or another kind of input).
    """
    labels = np.asarray(labels)
    if labels.ndim == 4:  # sigmoid channels: one label value per channel (a later channel wins where they overlap)
        labels = np.max(np.where(labels > 0, np.arange(1, labels.shape[-1] + 1), 0), axis=-1)
    if item.kind != "dicom_series" or not np.any(labels):
        return []
    present = {int(v): names.get(int(v), f"label {int(v)}") for v in np.unique(labels) if v}
    written = []
    if dicom_seg:
        from tfseg.io.dicom_seg import write_dicom_seg

        path = os.path.join(output_dir, f"{item.output_name}_seg.dcm")
        written.append(write_dicom_seg(labels, list(item.paths), path, present))
    if rtstruct:
        from tfseg.io.rtstruct import write_rtstruct

        written.append(write_rtstruct(labels, list(item.paths),
                                      os.path.join(output_dir, f"{item.output_name}_rtstruct.dcm"), present))
    return [os.fspath(path) for path in written]


def predict(run_dir, source, output_dir, convention="auto", on_error="skip", tta=False, probabilities=False,
            progress=True, dicom_seg=False, rtstruct=False):
    """Predict `source` with the model of the training run in `run_dir`; returns the per-case report.

    Args:
        run_dir: a training run's output folder (`model.keras`, `saved_model/`, `config.json`).
        source: a NIfTI file, a BraTS case or release folder, a datalist (its `validation` /
            `testing` entries), a DICOM series folder or file, or a folder of PNG/TIFF images.
        output_dir: where the label maps and `predict_report.json` are written.
        convention: "auto" (the workflow's: BraTS 0/1/2/4 NIfTI, LGG 0/255 masks, Sunnybrook
            masks and contour files), or one of `tfseg.inference.predictor.CONVENTIONS`.
        on_error: "skip" (a bad case is reported and the others go on) or "raise".
        tta: test-time augmentation (mirroring).
        probabilities: also write the probabilities.
        progress: a progress bar (one line per case off a terminal).
        dicom_seg, rtstruct: for DICOM series inputs, also write a DICOM SEG and/or an RTSTRUCT
            referencing the series, for PACS viewers (`write_clinical_objects`).

    Returns:
        The report dict of `tfseg.inference.predictor.predict_all` (also in `predict_report.json`).
    """
    from tfseg.inference import predictor

    workflow, module, config = run_workflow(run_dir)
    make_fn = getattr(module, "predict_fn", None) if module is not None else None
    if make_fn is not None and not os.path.isfile(os.path.join(run_dir, "model.keras")):
        logger.warning("%s has no model.keras: predicting through its SavedModel on the whole input instead of the "
                       "%s workflow's own inference path", run_dir, workflow)
        make_fn = None
    if make_fn is None:
        _, signature, metadata = predictor.load_run(run_dir)
        workflow_fn = predictor.savedmodel_predict_fn(signature, metadata)
    else:
        import keras

        import tfseg.losses  # noqa: F401  (registers the custom objects a tfseg model needs)
        import tfseg.metrics  # noqa: F401
        import tfseg.models  # noqa: F401

        model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
        workflow_fn = make_fn(config, model)
        logger.info("predicting with the %s workflow's inference path (%s)", workflow, run_dir)
    if convention == "auto":
        brats_labels = label_names(run_dir) == BRATS_LABEL_NAMES
        convention = predictor.WORKFLOW_CONVENTIONS.get(workflow, "brats" if brats_labels else "nifti")
    names = label_names(run_dir)
    clinical = {}

    def predict_fn(image, item, tta=False):
        labels, probs = workflow_fn(image, item, tta=tta)
        if dicom_seg or rtstruct:
            clinical[item.case_id] = write_clinical_objects(np.asarray(labels), item, output_dir, names,
                                                            dicom_seg, rtstruct)
        return (labels, probs) if probabilities else labels

    items = predictor.discover_inputs(source)
    report = predictor.predict_all(items, predict_fn, output_dir, convention=convention, on_error=on_error, tta=tta,
                                   progress=progress)
    if clinical:
        from tfseg.utils.atomic import atomic_write_json

        for entry in report["cases"]:
            entry["outputs"] = list(entry["outputs"]) + clinical.get(entry["case_id"], [])
        atomic_write_json(os.path.join(output_dir, predictor.REPORT_FILE), report)
    return report


def add_parser(subparsers):
    """Register `tfseg predict RUN_DIR INPUT OUTPUT` (the flags of `tfseg.inference.predictor.add_parser`)."""
    from tfseg.inference import predictor

    parser = predictor.add_parser(subparsers)
    parser.add_argument("--dicom-seg", action="store_true", help="DICOM series inputs: also write a DICOM SEG")
    parser.add_argument("--rtstruct", action="store_true", help="DICOM series inputs: also write an RTSTRUCT")
    parser.set_defaults(handler=run)
    return parser


def run(args):
    """Handle `tfseg predict`: print a one-line JSON summary; exit 1 when a case failed."""
    from tfseg.inference.predictor import REPORT_FILE

    report = predict(args.run_dir, args.input, args.output, convention=args.convention, on_error=args.on_error,
                     tta=args.tta, probabilities=args.probabilities, progress=not args.no_progress,
                     dicom_seg=args.dicom_seg, rtstruct=args.rtstruct)
    print(json.dumps({"written": report["written"], "failed": report["failed"], "output": os.path.abspath(args.output),
                      "report": os.path.join(args.output, REPORT_FILE)}))
    return 1 if report["failed"] else 0
