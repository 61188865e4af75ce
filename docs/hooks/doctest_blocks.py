"""Griffe extension for the documentation build: shows doctest examples as
code.

The package's docstrings put their `>>>` examples flush with the text after
an `Example:` line (so `doctest` and `help()` read them as written). Griffe's
Google-style parser only turns indented examples into code; this extension
wraps every unindented run of `>>>` / `...` lines and their expected output
in a `pycon` code fence before the docstring is parsed. It changes the
rendered page only, never the source.
"""

import griffe

_FENCE = "```"


def fence_doctests(text):
    """`text` with each unindented doctest run wrapped in a code fence."""
    out = []
    in_fence = False
    in_example = False
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        if stripped.startswith(_FENCE) and not in_example:
            in_fence = not in_fence
            out.append(line)
            continue
        if in_fence:
            out.append(line)
            continue
        if in_example:
            if not line.strip():
                out.append(_FENCE)
                in_example = False
            out.append(line)
            continue
        if line.startswith(">>>"):
            out.append(_FENCE + "pycon")
            out.append(line)
            in_example = True
            continue
        out.append(line)
    if in_example:
        out.append(_FENCE)
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Wraps unindented doctest examples in `pycon` code fences."""

    def on_object(self, *, obj, loader, **kwargs):
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
