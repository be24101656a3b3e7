"""Typed JSON configs: dataclasses with defaults, validated with messages that name the field.

Every field has a default, so an empty JSON object is a valid config; unknown keys, wrong types,
values outside a field's `choices` or range (`positive`, `at_least`, `in_range`), NaN or infinite
numbers, and an output folder that is a file (`output_folder`) are rejected with the dotted path
of the field (or the command-line flag) and what is allowed. Command-line flags override fields
after the file is read (`override`), with the same checks.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Train:
    ...     epochs: int = 10
    ...     optimizer: str = choice("adam", ("adam", "sgd"))
    ...     batch_size: int = at_least(1, default=2)
    >>> from_dict(Train, {"epochs": 3}).epochs
    3
    >>> from_dict(Train, {"batch_size": 0})
    Traceback (most recent call last):
    ...
    tfseg.errors.ConfigError: config.batch_size: must be >= 1, got 0
    >>> from_dict(Train, {"epoch": 3})
    Traceback (most recent call last):
    ...
    tfseg.errors.ConfigError: config: unknown field 'epoch' (known: epochs, optimizer, batch_size)
"""
import dataclasses
import hashlib
import json
import math
import os
import types
import typing

from tfseg.errors import ConfigError, DataError


def choice(default, choices):
    """A dataclass field whose value must be one of `choices`."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


def in_range(low, high, default):
    """A numeric field (or list of numbers) whose values must lie in `[low, high]` (None: unbounded).

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass
        ... class Data:
        ...     val_fraction: float = in_range(0.0, 1.0, default=0.2)
        >>> from_dict(Data, {"val_fraction": 1.5})
        Traceback (most recent call last):
        ...
        tfseg.errors.ConfigError: config.val_fraction: must be in [0.0, 1.0], got 1.5
    """
    return dataclasses.field(default=default, metadata={"range": (low, high, False)})


def at_least(low, default):
    """A numeric field (or list of numbers) whose values must be `>= low`."""
    return dataclasses.field(default=default, metadata={"range": (low, None, False)})


def positive(default):
    """A numeric field (or list of numbers) whose values must be `> 0` (learning rates, sizes)."""
    return dataclasses.field(default=default, metadata={"range": (0, None, True)})


def output_folder(default):
    """A path field naming a folder to write into: it may not exist yet, but must not be a file."""
    return dataclasses.field(default=default, metadata={"folder": True})


def _check_metadata(metadata, value, where):
    """Apply a field's range and folder checks (see `in_range`, `positive`, `output_folder`)."""
    if value is None:
        return value
    bounds = metadata.get("range")
    if bounds is not None:
        low, high, exclusive = bounds
        for item in (value if isinstance(value, (list, tuple)) else (value,)):
            if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if exclusive and low is not None and not item > low:
                raise ConfigError(f"{where}: must be > {low}, got {value!r}")
            if low is not None and high is not None and not low <= item <= high:
                raise ConfigError(f"{where}: must be in [{low}, {high}], got {value!r}")
            if low is not None and not item >= low:
                raise ConfigError(f"{where}: must be >= {low}, got {value!r}")
            if high is not None and not item <= high:
                raise ConfigError(f"{where}: must be <= {high}, got {value!r}")
    if metadata.get("folder") and os.path.lexists(value) and not os.path.isdir(value):
        raise ConfigError(f"{where}: {value} exists and is a file; give a folder to write the run into")
    return value


def config_fingerprint(config, ignore=("resume", "output_dir", "distribute", "train.epochs", "train.verbose")):
    """A short hash of a config's settings, to tell whether a checkpoint belongs to this run.

    Settings that may change between a run and its resume without changing what is trained are
    left out: by default whether to resume, the output folder, the distribution, the number of
    epochs (to train further) and the verbosity.

    Args:
        config: a config dataclass or a JSON-like dict (e.g. the run's `config.json`).
        ignore: dotted paths of fields left out.

    Returns:
        A 16-character hexadecimal string.

    Example:
        >>> config_fingerprint({"train": {"seed": 1, "epochs": 5}}) == config_fingerprint({"train": {"seed": 1}})
        True
        >>> config_fingerprint({"train": {"seed": 1}}) == config_fingerprint({"train": {"seed": 2}})
        False
    """
    data = to_dict(config) if dataclasses.is_dataclass(config) else json.loads(json.dumps(config, default=list))
    for dotted in ignore:
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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
        converted = _convert(hints[name], value, f"{where}.{name}", fields[name].metadata.get("choices"))
        values[name] = _check_metadata(fields[name].metadata, converted, f"{where}.{name}")
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


def override(config, updates, where="config", keep_none=False, flags=None):
    """A copy of `config` with dotted-path updates applied, e.g. `{"train.epochs": 5}`.

    Args:
        config: a config dataclass.
        updates: `{dotted path: value}`; nested dicts update nested sections field by field, so
            a partial JSON config changes only the fields it names.
        where: the name of `config` in error messages.
        keep_none: apply None values (a JSON file's `null`); by default they are ignored (a flag
            that was not given).
        flags: optional `{dotted path: "--flag"}`: errors about those fields name the flag.

    Returns:
        The updated copy.

    Raises:
        ConfigError: an unknown field, a wrong type, or a value outside the field's choices or
            range, naming the flag when `flags` knows it, e.g.
            "--epochs (train.epochs): must be >= 1, got -1".
    """
    if flags:
        try:
            return override(config, updates, where, keep_none)
        except ConfigError as error:
            text = str(error)
            for dotted, flag in flags.items():
                prefix = f"{where}.{dotted}:"
                if text.startswith(prefix):
                    raise ConfigError(f"{flag} ({dotted}):{text[len(prefix):]}") from None
            raise
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
            converted = _convert(hints[name], value, f"{where}.{name}", field.metadata.get("choices"))
            changes[name] = _check_metadata(field.metadata, converted, f"{where}.{name}")
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
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
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
