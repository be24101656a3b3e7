"""Typed JSON configs: dataclasses with defaults, validated with messages that name the field.

Every field has a default, so an empty JSON object is a valid config; unknown keys, wrong types
and values outside a field's `choices` are rejected with the dotted path of the field and what
is allowed. Command-line flags override fields after the file is read (`override`).

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Train:
    ...     epochs: int = 10
    ...     optimizer: str = choice("adam", ("adam", "sgd"))
    >>> from_dict(Train, {"epochs": 3}).epochs
    3
    >>> from_dict(Train, {"epoch": 3})
    Traceback (most recent call last):
    ...
    tfseg.errors.ConfigError: config: unknown field 'epoch' (known: epochs, optimizer)
"""
import dataclasses
import json
import os
import types
import typing

from tfseg.errors import ConfigError, DataError


def choice(default, choices):
    """A dataclass field whose value must be one of `choices`."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


def from_dict(cls, data, where="config"):
    """Build dataclass `cls` from a JSON-like dict, validating every field.

    Args:
        cls: a dataclass type whose fields all have defaults.
        data: a dict (missing keys take their defaults).
        where: the dotted name used in error messages.

    Returns:
        An instance of `cls`.

    Raises:
        ConfigError: unknown key, wrong type or a value outside the field's choices.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, f"{where}.{name}", fields[name].metadata.get("choices"))
    return cls(**values)


def to_dict(config):
    """The JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def read_json_config(path):
    """The JSON object of a config file; a missing or malformed file raises DataError naming it."""
    try:
        with open(path) as stream:
            data = json.load(stream)
    except FileNotFoundError:
        raise DataError(path, "config file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not a JSON config file") from None
    except UnicodeDecodeError:
        raise DataError(path, "not a text file (expected a JSON config)") from None
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON: {error.msg}", line=error.lineno) from None
    if not isinstance(data, dict):
        raise DataError(path, f"a config file holds a JSON object, got {type(data).__name__}")
    return data


def load_config(path, cls):
    """Read a JSON file into dataclass `cls` (missing fields take their defaults).

    A missing or malformed file raises DataError naming it; a bad field, ConfigError naming both.
    """
    data = read_json_config(path)
    try:
        return from_dict(cls, data)
    except ConfigError as error:
        raise ConfigError(f"{os.fspath(path)}: {error}") from None


def apply_config_file(config, path):
    """`config` with the fields of the JSON file at `path` applied on top (the others keep their values).

    Example:
        >>> import dataclasses, json, tempfile
        >>> @dataclasses.dataclass
        ... class Run:
        ...     epochs: int = 10
        ...     seed: int = 0
        >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        ...     json.dump({"epochs": 3}, f)
        >>> apply_config_file(Run(seed=7), f.name)
        Run(epochs=3, seed=7)
    """
    data = read_json_config(path)
    try:
        return override(config, data, keep_none=True)
    except ConfigError as error:
        raise ConfigError(f"{os.fspath(path)}: {error}") from None


def override(config, updates, where="config", keep_none=False):
    """A copy of `config` with dotted-path updates applied, e.g. `{"train.epochs": 5}`.

    None values are ignored (a flag that was not given) unless `keep_none` (a JSON file's `null`).
    Nested dicts update nested sections field by field, so a partial JSON config changes only the
    fields it names.
    """
    nested = {}
    for dotted, value in updates.items():
        if value is None and not keep_none:
            continue
        head, _, rest = dotted.partition(".")
        nested.setdefault(head, {})
        if rest:
            nested[head][rest] = value
        else:
            nested[head] = value
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    hints = typing.get_type_hints(type(config))
    for name, value in nested.items():
        if name not in fields:
            raise ConfigError(f"{where}: unknown field {name!r} (known: {', '.join(sorted(fields))})")
        current = getattr(config, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[name] = override(current, value, f"{where}.{name}", keep_none)
        else:
            field = next(f for f in dataclasses.fields(config) if f.name == name)
            changes[name] = _convert(hints[name], value, f"{where}.{name}", field.metadata.get("choices"))
    return dataclasses.replace(config, **changes)


def _convert(hint, value, where, choices=None):
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(map(repr, choices))}, got {value!r}")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of the allowed types")
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if hint is typing.Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return os.fspath(value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else typing.Any
        converted = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return dict(value)
    return value
