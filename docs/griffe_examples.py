"""A griffe extension: read tfseg's `Example:` docstring sections as Google-style `Examples:` sections.

tfseg's docstrings title their doctests `Example:`; griffe's Google parser only knows `Examples:`
and would otherwise render the doctest lines as prose. With this extension they become code blocks.
Loaded by mkdocstrings (see mkdocs.yml).
"""
import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename `Example:` section titles to `Examples:` before the docstrings are parsed."""

    def on_instance(self, *, obj, **kwargs):
        docstring = getattr(obj, "docstring", None)
        if docstring is not None and docstring.value:
            docstring.value = _EXAMPLE.sub(r"\1Examples:", docstring.value)
