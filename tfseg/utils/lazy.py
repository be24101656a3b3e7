"""Package attributes loaded from their modules on first use (PEP 562), so importing a package stays light.

Example:
    >>> import types
    >>> package = types.ModuleType("demo")
    >>> package.__getattr__, package.__dir__ = lazy_attributes(package.__dict__, {"sqrt": "math"})
    >>> package.__getattr__("sqrt")(9.0), "sqrt" in package.__dir__()
    (3.0, True)
"""
import importlib

__all__ = ["lazy_attributes"]


def lazy_attributes(namespace, exports):
    """The `__getattr__` and `__dir__` of a package whose names in `exports` load on first use.

    Args:
        namespace: the package's `globals()`; a loaded name is stored there, so it loads once.
        exports: `{name: module path}`, e.g. `{"Trainer": "tfseg.training.trainer"}`.

    Returns:
        `(__getattr__, __dir__)`, to assign at the package's top level.
    """
    package = namespace.get("__name__", "package")

    def __getattr__(name):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
