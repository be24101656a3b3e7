"""The model registry: names to builders, configs to models, helpful errors."""
import pytest

from tfseg.errors import ConfigError
from tfseg.models import build_model, fcn8s, fcn_alexnet, get_builder, list_models, register_model
from tfseg.models import registry
from tfseg.models.registry import builder_arguments


@pytest.fixture
def clean_registry(monkeypatch):
    """Let a test register throw-away builders without leaving them behind."""
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))


def test_fcn_builders_are_registered():
    assert {"fcn8s", "fcn_alexnet"} <= set(list_models())
    assert list_models() == sorted(list_models())
    assert get_builder("fcn8s") is fcn8s
    assert get_builder("fcn_alexnet") is fcn_alexnet


def test_build_from_name_and_from_config():
    model = build_model("fcn_alexnet", input_shape=(64, 64, 1), num_classes=3, width=0.125, fc_units=8)
    assert model.name == "fcn_alexnet" and model.output_shape == (None, 64, 64, 3)

    config = {"name": "fcn8s", "input_shape": [64, 64, 1], "num_classes": 4, "width": 0.125, "fc_units": 8,
              "output_activation": None, "model_name": "lv_fcn8s"}
    model = build_model(config, num_classes=2)  # overrides win over the config
    assert model.output_shape == (None, 64, 64, 2)
    assert model.layers[-1].name == "logits"
    assert model.name == "lv_fcn8s"
    assert config["num_classes"] == 4 and "model_name" in config  # the caller's config is not modified


def test_unknown_model_lists_known_names():
    with pytest.raises(ConfigError, match=r"unknown model 'fcn16s'; known models: .*fcn8s.*fcn_alexnet"):
        build_model({"name": "fcn16s"})
    with pytest.raises(ConfigError, match="unknown model"):
        get_builder(["not", "a", "name"])


def test_unknown_argument_names_it_and_lists_accepted():
    with pytest.raises(ConfigError, match=r"'fcn8s' does not accept argument\(s\) 'filters'; accepted: input_shape, "
                                          r"num_classes, weights, fc_units, width, dropout, scale_skips"):
        build_model({"name": "fcn8s", "filters": 32})
    with pytest.raises(ConfigError, match="'scale_skips'"):
        build_model("fcn_alexnet", scale_skips=True)


def test_config_without_name_or_of_wrong_type():
    with pytest.raises(ConfigError, match="needs a 'name' key"):
        build_model({"num_classes": 2})
    with pytest.raises(ConfigError, match="model name or a config dict, got int"):
        build_model(3)


def test_builder_arguments_reads_the_signature():
    args = builder_arguments("fcn_alexnet")
    assert args["fc_units"] == 4096 and args["weights"] is None and args["input_shape"] == (256, 256, 3)
    assert "scale_skips" not in args


def test_register_model_decorator(clean_registry):
    @register_model("toy_for_test")
    def toy(input_shape=(8, 8, 1), num_classes=2, **extra):
        return {"input_shape": input_shape, "num_classes": num_classes, **extra}

    assert "toy_for_test" in list_models()
    # builders with **kwargs accept any argument
    assert build_model({"name": "toy_for_test", "anything": 1}) == {"input_shape": (8, 8, 1), "num_classes": 2,
                                                                     "anything": 1}
    # registering the same function again (e.g. a module reload) is allowed, another one is not
    register_model("toy_for_test")(toy)
    with pytest.raises(ConfigError, match="already registered"):
        @register_model("toy_for_test")
        def other_toy():
            return None
    with pytest.raises(ConfigError, match="non-empty string"):
        register_model("")
    with pytest.raises(ConfigError, match="must decorate a function"):
        register_model("not_callable")(42)


def test_registry_does_not_leak_test_builders():
    assert "toy_for_test" not in list_models()
