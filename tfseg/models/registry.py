"""Model registry: names to builder functions, so a config can say `{"name": "fcn8s", ...}`.

Builders register themselves with the `register_model` decorator where they are defined; importing
`tfseg.models` imports every family, so all builders are known once the package is imported. This
module itself imports neither TensorFlow nor Keras.

Example:
    >>> from tfseg.models import build_model, list_models
    >>> "fcn8s" in list_models()
    True
    >>> model = build_model({"name": "fcn8s", "input_shape": (64, 64, 1), "width": 0.125,
    ...                      "fc_units": 16}, num_classes=3)
    >>> model.output_shape
    (None, 64, 64, 3)
"""
import collections.abc
import inspect
import logging

from tfseg.errors import ConfigError

logger = logging.getLogger(__name__)

_BUILDERS = {}


def register_model(name):
    """Decorator that registers a model builder under `name`.

    Args:
        name: the name configs use for this builder, e.g. `"fcn8s"`.

    Returns:
        The decorator; it returns the builder unchanged.

    Raises:
        ConfigError: if `name` is not a non-empty string, or is already taken by another builder.

    Example:
        >>> @register_model("my_net_for_docs")
        ... def my_net(input_shape=(32, 32, 1), num_classes=2):
        ...     ...
        >>> get_builder("my_net_for_docs") is my_net
        True
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a model name must be a non-empty string, got {name!r}")

    def decorator(builder):
        if not callable(builder):
            raise ConfigError(f"register_model({name!r}) must decorate a function, got {builder!r}")
        previous = _BUILDERS.get(name)
        if previous is not None and _qualified(previous) != _qualified(builder):
            raise ConfigError(
                f"model name {name!r} is already registered to {_qualified(previous)}; "
                f"cannot register {_qualified(builder)} under the same name")
        _BUILDERS[name] = builder
        return builder

    return decorator


def _qualified(function):
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


def list_models():
    """The registered model names, sorted.

    Returns:
        A list of strings.

    Example:
        >>> from tfseg.models import list_models
        >>> {"fcn8s", "fcn_alexnet"} <= set(list_models())
        True
    """
    return sorted(_BUILDERS)


def get_builder(name):
    """The builder function registered under `name`.

    Args:
        name: a registered model name.

    Returns:
        The builder function.

    Raises:
        ConfigError: if no builder has that name; the message lists the known names.

    Example:
        >>> from tfseg.models import get_builder, fcn8s
        >>> get_builder("fcn8s") is fcn8s
        True
    """
    try:
        return _BUILDERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models()) or '(none)'}") from None


def builder_arguments(name):
    """The keyword arguments the builder `name` accepts, with their defaults.

    Args:
        name: a registered model name.

    Returns:
        A dict `{argument: default}`; arguments without a default map to `inspect.Parameter.empty`.

    Example:
        >>> from tfseg.models.registry import builder_arguments
        >>> builder_arguments("fcn8s")["num_classes"]
        2
    """
    signature = inspect.signature(get_builder(name))
    return {p.name: p.default for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_model(name_or_config, **overrides):
    """Build a registered model from its name or a config dict.

    Args:
        name_or_config: a model name such as `"fcn8s"`, or a mapping `{"name": "fcn8s", **kwargs}`
            whose other keys are keyword arguments of the builder.
        **overrides: builder keyword arguments that take precedence over the config's.

    Returns:
        What the builder returns (a `keras.Model`).

    Raises:
        ConfigError: for an unknown model name, a config without "name", or an argument the
            builder does not accept (the message names it and lists the accepted ones).

    Example:
        >>> from tfseg.models import build_model
        >>> model = build_model("fcn_alexnet", input_shape=(64, 64, 1), width=0.125, fc_units=8)
        >>> model.name
        'fcn_alexnet'
    """
    if isinstance(name_or_config, str):
        name, kwargs = name_or_config, {}
    elif isinstance(name_or_config, collections.abc.Mapping):
        kwargs = dict(name_or_config)
        if "name" not in kwargs:
            raise ConfigError(f"a model config needs a 'name' key naming the model "
                              f"(one of: {', '.join(list_models())}); got keys {sorted(kwargs)}")
        name = kwargs.pop("name")
        # A config may name the Keras model separately from the builder.
        if "model_name" in kwargs:
            kwargs["name"] = kwargs.pop("model_name")
    else:
        raise ConfigError(f"build_model expects a model name or a config dict, got {type(name_or_config).__name__}")
    kwargs.update(overrides)
    builder = get_builder(name)
    signature = inspect.signature(builder)
    if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        accepted = [p.name for p in signature.parameters.values()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [key for key in kwargs if key not in accepted]
        if unknown:
            raise ConfigError(f"model {name!r} does not accept argument(s) {', '.join(map(repr, unknown))}; "
                              f"accepted: {', '.join(accepted)}")
    logger.debug("building model %r with %s", name, kwargs)
    return builder(**kwargs)
