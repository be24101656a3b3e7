import dataclasses
import json

import pytest

from tfseg.errors import ConfigError, DataError
from tfseg.training.config import choice, from_dict, load_config, override, to_dict


@dataclasses.dataclass
class Data:
    image_dir: str | None = None
    image_size: int = 128
    spacing: tuple[float, ...] = (1.0, 1.0)


@dataclasses.dataclass
class Config:
    data: Data = dataclasses.field(default_factory=Data)
    loss: str = choice("dice", ("dice", "ce"))
    learning_rate: float = 1e-4
    options: dict = dataclasses.field(default_factory=dict)
    resume: bool = False


def test_defaults_and_round_trip():
    assert from_dict(Config, {}) == Config()
    config = from_dict(Config, {"data": {"image_size": 64, "spacing": [1, 2.5]}, "learning_rate": 1})
    assert config.data.spacing == (1.0, 2.5) and config.learning_rate == 1.0
    assert from_dict(Config, to_dict(config)) == config


@pytest.mark.parametrize("data, message", [
    ({"data": {"image_sise": 3}}, "config.data: unknown field 'image_sise'"),
    ({"data": {"image_size": "big"}}, "config.data.image_size: expected an integer"),
    ({"data": {"image_size": True}}, "config.data.image_size: expected an integer"),
    ({"loss": "focal"}, "config.loss: must be one of 'dice', 'ce'"),
    ({"resume": "yes"}, "config.resume: expected true or false"),
    ({"data": {"spacing": 1.0}}, "config.data.spacing: expected a list"),
    ({"data": []}, "config.data: expected an object"),
])
def test_errors_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        from_dict(Config, data)


def test_load_config_files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"loss": "ce"}))
    assert load_config(good, Config).loss == "ce"
    bad = tmp_path / "bad.json"
    bad.write_text('{"loss": "ce",\n}')
    with pytest.raises(DataError, match="bad.json:2: not valid JSON"):
        load_config(bad, Config)
    with pytest.raises(DataError, match="config file not found"):
        load_config(tmp_path / "missing.json", Config)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"learning_rate": "fast"}')
    with pytest.raises(ConfigError, match="wrong.json: config.learning_rate: expected a number"):
        load_config(wrong, Config)


def test_override_dotted_paths():
    config = override(Config(), {"data.image_size": 256, "resume": True, "loss": None})
    assert config.data.image_size == 256 and config.resume and config.loss == "dice"
    with pytest.raises(ConfigError, match="unknown field 'epochs'"):
        override(Config(), {"epochs": 3})
    with pytest.raises(ConfigError, match="config.data.image_size: expected an integer"):
        override(Config(), {"data.image_size": "x"})
