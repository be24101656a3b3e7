"""The workflow protocol: what a workflow module provides, and the table of runnable workflows.

A workflow module (`tfseg.workflows.lgg`, `...brats`, ...) is a config dataclass built from the
shared sections (`tfseg.workflows.sections`), its built-in CPU defaults and `--paper` overrides,
and the steps `find_data -> make_datasets -> build -> train -> evaluate -> export`, chained by
`run(config)`. The recipes in `recipes/` and `tfseg train NAME` both go through
`tfseg.workflows.entry.workflow_main(NAME)`, which resolves the config the same way for both
(built-in CPU defaults -> `--paper` -> `--config` file -> flags), so they cannot drift.

Example:
    >>> sorted(WORKFLOWS)[:3]
    ['brats', 'brats-slices', 'brats2d']
    >>> WORKFLOWS["sunnybrook-alexnet"].cpu_defaults().model.name
    'fcn_alexnet'
"""
import dataclasses
import importlib
import typing

from tfseg.errors import ConfigError


@typing.runtime_checkable
class Workflow(typing.Protocol):
    """What every workflow module provides (checked by `check_workflow`).

    Module attributes: `CONFIG_CLASS` (the config dataclass), `CLASS_NAMES` (the output
    channels' names), and the functions below.
    """

    def add_arguments(self, parser, defaults):
        """Add the workflow's own flags to `parser` (the shared ones are added by the entry)."""

    def flag_overrides(self, args):
        """Dotted-path config updates of the workflow's own flags (None values: flag not given)."""

    def find_data(self, config):
        """The training and held-out records (synthetic data written first when none is given)."""

    def make_datasets(self, config, data, dist=None):
        """The training and validation tf.data pipelines."""

    def build(self, config, dist=None):
        """The Keras model, built under the distribution's scope."""

    def train(self, config, model, train_ds, val_ds, dist=None):
        """Train with checkpoints every epoch and resume; returns `(history, seconds)`."""

    def evaluate(self, config, model, *args, **kwargs):
        """Score the held-out data through the inference path; returns the metrics dict."""

    def export(self, config, model, metrics, dist=None):
        """Write `model.keras`, `saved_model/`, `metrics.json` and `config.json`."""

    def run(self, config):
        """All steps in order; returns the metrics (empty on non-chief workers)."""

    def summary_table(self, metrics):
        """A short text table of the headline figures."""


#: The functions `check_workflow` requires of a workflow module.
STEPS = ("add_arguments", "flag_overrides", "find_data", "make_datasets", "build", "train", "evaluate", "export",
         "run", "summary_table")


def check_workflow(module):
    """Raise `ConfigError` unless `module` provides the whole protocol; returns the module.

    Example:
        >>> import tfseg.workflows.lgg as lgg
        >>> check_workflow(lgg).__name__
        'tfseg.workflows.lgg'
    """
    missing = [name for name in STEPS if not callable(getattr(module, name, None))]
    missing += [name for name in ("CONFIG_CLASS", "CLASS_NAMES") if not hasattr(module, name)]
    if missing:
        raise ConfigError(f"workflow module {module.__name__} lacks {', '.join(missing)}")
    return module


@dataclasses.dataclass(frozen=True)
class WorkflowEntry:
    """One runnable workflow: its module and which of the module's defaults and paper settings it uses.

    Attributes:
        name: the name of `tfseg train NAME`.
        module: the workflow module's import path.
        summary: one line for `tfseg train --help`.
        recipe: the recipe script in `recipes/` that runs it.
        defaults: the module attribute holding the built-in CPU defaults (a config instance).
        paper: the module attribute holding the `--paper` overrides (dotted paths).
    """

    name: str
    module: str
    summary: str
    recipe: str
    defaults: str = "CPU_DEFAULTS"
    paper: str = "PAPER"

    def load(self):
        """The workflow module, checked against the protocol."""
        return check_workflow(importlib.import_module(self.module))

    def cpu_defaults(self):
        """The built-in CPU-sized config."""
        return getattr(self.load(), self.defaults)

    def paper_overrides(self):
        """The dotted-path overrides of `--paper` (the published settings)."""
        return dict(getattr(self.load(), self.paper))


#: Every workflow of `tfseg train` and `recipes/`, by name.
WORKFLOWS = {entry.name: entry for entry in (
    WorkflowEntry("sunnybrook", "tfseg.workflows.sunnybrook", "cardiac LV on Sunnybrook DICOM + contours, FCN-8s (W1)",
                  "sunnybrook_fcn8s.py"),
    WorkflowEntry("sunnybrook-alexnet", "tfseg.workflows.sunnybrook",
                  "cardiac LV on Sunnybrook, FCN-AlexNet (W1)", "sunnybrook_fcn_alexnet.py",
                  defaults="ALEXNET_CPU_DEFAULTS", paper="ALEXNET_PAPER"),
    WorkflowEntry("brats", "tfseg.workflows.brats", "3D brain tumour on BraTS NIfTI, SegResNet + VAE (W2)",
                  "brats_segresnet_vae.py"),
    WorkflowEntry("brats2d", "tfseg.workflows.brats2d", "2D brain tumour on BraTS patches, ResNet U-Net, focal (W3)",
                  "brats_unet2d.py"),
    WorkflowEntry("lgg", "tfseg.workflows.lgg", "lower-grade glioma FLAIR on Kaggle LGG TIFFs, ResUNet (W4)",
                  "lgg_resunet.py"),
    WorkflowEntry("brats-slices", "tfseg.workflows.brats_slices",
                  "WT/ET on 3-plane BraTS slices, UNet++ DenseNet121 (W5 stage 1)", "brats_unetpp_slices.py"),
    WorkflowEntry("rsna", "tfseg.workflows.rsna",
                  "MGMT status from MR series: UNet++ masks, then CNN + BiLSTM per MRI type (W5)", "rsna_two_stage.py"),
)}


def get_workflow(name):
    """The `WorkflowEntry` called `name`; a `ConfigError` lists the known names otherwise."""
    if name not in WORKFLOWS:
        raise ConfigError(f"unknown workflow {name!r} (known: {', '.join(sorted(WORKFLOWS))})")
    return WORKFLOWS[name]
