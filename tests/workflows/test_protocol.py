"""One entry for every workflow: recipes and `tfseg train` resolve the same config, in a fixed order."""
import json

import pytest
from recipe_helpers import load_recipe

from tfseg.cli import main as cli_main
from tfseg.errors import ConfigError
from tfseg.training.config import to_dict
from tfseg.workflows.entry import resolve_config
from tfseg.workflows.protocol import WORKFLOWS, check_workflow, get_workflow

NAMES = sorted(WORKFLOWS)


def printed_config(capsys, run, argv):
    assert run([*argv, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("extra", [[], ["--paper"], ["--config", "CONFIG"], ["--paper", "--config", "CONFIG",
                                                                             "--epochs", "7"]])
def test_recipe_and_cli_resolve_identical_configs(name, extra, tmp_path, capsys):
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"train": {"epochs": 3, "seed": 5}, "output_dir": str(tmp_path / "out")}))
    argv = [str(config_file) if arg == "CONFIG" else arg for arg in extra]
    recipe = load_recipe(get_workflow(name).recipe[:-3])
    from_recipe = printed_config(capsys, recipe.main, argv)
    from_cli = printed_config(capsys, lambda a: cli_main(["train", name, *a]), argv)
    assert from_recipe == from_cli
    if "--config" in extra:
        assert from_cli["train"]["seed"] == 5 and from_cli["output_dir"] == str(tmp_path / "out")
        assert from_cli["train"]["epochs"] == (7 if "--epochs" in extra else 3)


@pytest.mark.parametrize("name", NAMES)
def test_precedence_defaults_paper_config_flags(name, tmp_path):
    entry = get_workflow(name)
    defaults, paper = entry.cpu_defaults(), entry.paper_overrides()
    assert to_dict(resolve_config(name, [])) == to_dict(defaults)
    with_paper = resolve_config(name, ["--paper"])
    assert with_paper.train.learning_rate == paper["train.learning_rate"]
    assert with_paper.train.batch_size == paper["train.batch_size"]
    # the file overrides --paper, the flag overrides the file; fields the file does not name keep --paper's value
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"train": {"batch_size": 3, "learning_rate": 0.5}}))
    resolved = resolve_config(name, ["--paper", "--config", str(config_file), "--learning-rate", "0.25"])
    assert resolved.train.batch_size == 3 and resolved.train.learning_rate == 0.25
    assert resolved.train.epochs == paper["train.epochs"]


@pytest.mark.parametrize("name", NAMES)
def test_printed_config_reproduces_the_run(name, tmp_path, capsys):
    recipe = load_recipe(get_workflow(name).recipe[:-3])
    first = printed_config(capsys, recipe.main, ["--paper", "--epochs", "4", "--seed", "9"])
    saved = tmp_path / "printed.json"
    saved.write_text(json.dumps(first))
    again = printed_config(capsys, recipe.main, ["--config", str(saved)])
    assert again == first


@pytest.mark.parametrize("name", NAMES)
def test_every_workflow_module_follows_the_protocol(name):
    module = check_workflow(get_workflow(name).load())
    assert isinstance(get_workflow(name).cpu_defaults(), module.CONFIG_CLASS)


def test_unknown_workflow_and_train_help(capsys):
    with pytest.raises(ConfigError, match="unknown workflow 'nope'"):
        get_workflow("nope")
    assert cli_main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for name, entry in WORKFLOWS.items():
        assert name in out and entry.recipe in out
    assert cli_main(["train"]) == 2


def test_version(capsys):
    import tfseg

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tfseg {tfseg.__version__}"


# --------------------------------------------------------------------------------------------
# --paper is the seed's setting (../shared/docs/workflows.md, "Seed settings that --paper must reproduce").
# --------------------------------------------------------------------------------------------

def paper(name):
    return resolve_config(name, ["--paper"])


@pytest.mark.parametrize("name,model", [("sunnybrook", "fcn8s"), ("sunnybrook-alexnet", "fcn_alexnet")])
def test_paper_w1_sunnybrook(name, model):
    config = paper(name)
    assert config.model.name == model
    assert config.data.image_size == 256 and config.train.batch_size == 1 and config.train.epochs == 20
    assert config.train.learning_rate == 1e-4 and config.train.lr_schedule == "constant"
    assert config.train.optimizer == "adam" and config.train.loss == "ce"  # softmax cross-entropy
    assert config.model.options["fc_units"] == 4096 and config.model.options["width"] == 1.0
    # grayscale -> RGB for pretrained encoders
    assert resolve_config(name, ["--paper", "--weights", "imagenet"]).data.channels == 3


def test_paper_w2_brats():
    config = paper("brats")
    assert tuple(config.data.crop_size) == (128, 192, 160)  # 160x192x128 in (x, y, z), stored (D, H, W)
    assert config.train.batch_size == 1 and config.train.epochs == 300
    model = config.model
    assert (model.name, model.init_filters, tuple(model.blocks_down), tuple(model.blocks_up)) == \
        ("segresnet_vae", 32, (1, 2, 2, 4), (1, 1, 1))
    assert model.dropout == 0.2 and model.vae_latent == 128
    train = config.train
    assert (train.optimizer, train.learning_rate, train.lr_schedule, train.weight_decay) == ("adam", 1e-4, "poly", 1e-5)
    assert train.loss == "dice_squared"
    loss = __import__("tfseg.training.registries", fromlist=["make_loss"]).make_loss(train.loss, mode="sigmoid")
    assert loss.options["squared_denominator"] is True


def test_paper_w3_brats2d():
    config = paper("brats2d")
    assert config.patches.patch_size == 128 and config.model.encoder == "resnet34"
    assert config.train.loss == "focal"  # focal alone
    assert config.train.optimizer == "adamw" and config.train.weight_decay > 0 and config.train.plateau_patience > 0
    assert config.train.mixed_precision is True
    augment = config.augment
    assert tuple(augment.spatial_weights) == (0.35, 0.35, 0.15, 0.15) and augment.spatial_probability == 0.95
    assert tuple(augment.flip_axes) == (0, 1) and augment.flip_probability == 1.0
    assert tuple(augment.elastic_max_displacement)[:2] == (2.0, 2.0)
    assert augment.intensity_probability == 0.95 and augment.noise_std == 0.1 and augment.bias_coefficients == 0.1
    assert tuple(augment.percentiles) == (0.5, 99.5)
    assert config.inference.overlap == 0.0  # test tiles with stride = patch


def test_paper_w4_lgg():
    config = paper("lgg")
    assert config.data.image_size == 256 and config.data.augment is False and config.data.layout_split is True
    assert config.model.name == "resunet" and config.train.loss == "dice"
    train = config.train
    assert (train.optimizer, train.learning_rate, train.lr_schedule, train.lr_decay) == ("adam", 1e-4, "exponential",
                                                                                          0.95)
    assert train.epochs == 20 and train.batch_size == 32


def test_paper_w5_stage1_slices():
    config = paper("brats-slices")
    assert config.slices.image_size == 224 and config.slices.min_ratio == 0.01
    assert set(config.slices.planes) == {"axial", "coronal", "sagittal"}
    assert (config.model.name, config.model.encoder, config.model.weights) == ("unet_plus_plus", "densenet121",
                                                                               "imagenet")
    assert config.model.freeze_epochs == 10 and config.train.epochs > 180
    assert config.data.val_fraction == 0.2
