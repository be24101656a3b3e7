"""Config values are validated at the door: ranges, finite numbers, an output folder that is a file."""
import dataclasses
import math

import pytest

from tfseg.errors import ConfigError
from tfseg.training.config import at_least, config_fingerprint, from_dict, in_range, output_folder, override, \
    positive


@dataclasses.dataclass
class Train:
    epochs: int = at_least(1, default=3)
    learning_rate: float = positive(1e-3)
    val_fraction: float = in_range(0.0, 1.0, default=0.2)
    crop_size: tuple[int, ...] = positive((8, 8))
    momentum: float = 0.9


@dataclasses.dataclass
class Run:
    train: Train = dataclasses.field(default_factory=Train)
    output_dir: str = output_folder("runs/x")


@pytest.mark.parametrize("data, message", [
    ({"train": {"epochs": -1}}, "config.train.epochs: must be >= 1, got -1"),
    ({"train": {"epochs": 0}}, "config.train.epochs: must be >= 1, got 0"),
    ({"train": {"learning_rate": -1}}, "config.train.learning_rate: must be > 0, got -1.0"),
    ({"train": {"learning_rate": 0}}, "config.train.learning_rate: must be > 0, got 0.0"),
    ({"train": {"learning_rate": math.nan}}, "config.train.learning_rate: must be a finite number, got nan"),
    ({"train": {"momentum": math.inf}}, "config.train.momentum: must be a finite number, got inf"),
    ({"train": {"val_fraction": 1.5}}, "config.train.val_fraction: must be in [0.0, 1.0], got 1.5"),
    ({"train": {"crop_size": [8, -64]}}, "config.train.crop_size: must be > 0, got (8, -64)"),
])
def test_from_dict_names_the_field_and_the_range(data, message):
    with pytest.raises(ConfigError) as caught:
        from_dict(Run, data)
    assert str(caught.value) == message


def test_override_names_the_flag():
    flags = {"train.epochs": "--epochs", "train.learning_rate": "--learning-rate"}
    with pytest.raises(ConfigError) as caught:
        override(Run(), {"train.epochs": -1}, flags=flags)
    assert str(caught.value) == "--epochs (train.epochs): must be >= 1, got -1"
    with pytest.raises(ConfigError, match=r"^--learning-rate \(train.learning_rate\): must be a finite number"):
        override(Run(), {"train.learning_rate": float("nan")}, flags=flags)
    with pytest.raises(ConfigError, match=r"^config.train.val_fraction: must be in \[0.0, 1.0\], got -0.1$"):
        override(Run(), {"train.val_fraction": -0.1}, flags=flags)  # no flag known: the field
    assert override(Run(), {"train.epochs": 1, "train.learning_rate": 0.5}).train.learning_rate == 0.5


def test_output_dir_that_is_a_file(tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("x")
    with pytest.raises(ConfigError) as caught:
        override(Run(), {"output_dir": str(existing)})
    assert str(caught.value) == (f"config.output_dir: {existing} exists and is a file; give a folder to write the "
                                 "run into")
    with pytest.raises(ConfigError, match="exists and is a file"):
        from_dict(Run, {"output_dir": str(existing)})
    assert override(Run(), {"output_dir": str(tmp_path / "new")}).output_dir == str(tmp_path / "new")


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "-1"], "--epochs (train.epochs): must be >= 1, got -1"),
    (["--batch-size", "0"], "--batch-size (train.batch_size): must be >= 1, got 0"),
    (["--learning-rate", "nan"], "--learning-rate (train.learning_rate): must be a finite number, got nan"),
    (["--learning-rate", "-1"], "--learning-rate (train.learning_rate): must be > 0, got -1.0"),
    (["--image-size", "-64"], "--image-size (data.image_size): must be > 0, got -64"),
])
def test_workflow_flags_are_checked(flags, message):
    from tfseg.workflows.entry import resolve_config

    with pytest.raises(ConfigError) as caught:
        resolve_config("lgg", flags)
    assert str(caught.value) == message


def test_every_workflow_default_and_paper_config_passes_its_own_checks():
    from tfseg.training.config import to_dict
    from tfseg.workflows.protocol import WORKFLOWS

    for entry in WORKFLOWS.values():
        config = entry.cpu_defaults()
        config = from_dict(type(config), to_dict(config))
        override(config, entry.paper_overrides())


def test_config_fingerprint_ignores_what_a_resume_may_change():
    base = Run()
    same = override(base, {"output_dir": "elsewhere", "train.epochs": 9})
    assert config_fingerprint(base) == config_fingerprint(same)
    assert config_fingerprint(base) != config_fingerprint(override(base, {"train.learning_rate": 0.5}))
    assert len(config_fingerprint(base)) == 16
