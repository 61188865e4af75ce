"""The documentation site: every public name is in the API reference, and
`mkdocs build --strict` succeeds (no broken links, no docstring the
reference cannot parse, every page in the navigation)."""

import ast
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The public modules, each with its own page under docs/api/.
MODULES = ("ops", "layers", "models", "data", "tuning", "distribute", "xla_check")


def _source(module):
    path = os.path.join(ROOT, "keras_attention", *module.split("."))
    return path + "/__init__.py" if os.path.isdir(path) else path + ".py"


def _all(module):
    """`__all__` of `keras_attention.<module>`, read from the source (no
    import)."""
    path = _source(module) if module else os.path.join(ROOT, "keras_attention", "__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{path} has no __all__")


def _documented():
    """The identifiers of every `::: identifier` in docs/api/*.md."""
    found = set()
    folder = os.path.join(ROOT, "docs", "api")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".md"):
            text = open(os.path.join(folder, name), encoding="utf-8").read()
            found.update(re.findall(r"^::: *([\w.]+)", text, re.M))
    return found


def test_every_public_name_is_in_the_api_reference():
    expected = {f"keras_attention.{m}" for m in MODULES}
    for name in _all(""):
        if name not in MODULES:
            expected.add(f"keras_attention.{name}")
    for module in MODULES:
        expected.update(f"keras_attention.{module}.{name}" for name in _all(module))
    documented = set()
    for identifier in _documented() - {"keras_attention"}:
        # A public function named like its own module
        # (`keras_attention.models.text_classifier`) is documented by its
        # full path, since the name alone resolves to the module.
        module, _, name = identifier.rpartition(".")
        if os.path.isfile(os.path.join(ROOT, *module.split(".")) + ".py") and module.endswith("." + name):
            identifier = module
        documented.add(identifier)
    missing = sorted(expected - documented)
    extra = sorted(documented - expected)
    assert not missing, f"public names missing from docs/api/*.md: {missing}"
    assert not extra, f"docs/api/*.md documents names that are not public (__all__): {extra}"


def test_top_level_all_names_every_module_with_a_page():
    assert set(MODULES) <= set(_all("")), _all("")


def test_plot_script_draws_every_image_of_the_site(tmp_path):
    # benchmarks/plot_docs.py redraws docs/images/ from the measured tables.
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "plot_docs.py"), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = sorted(os.listdir(tmp_path))
    committed = sorted(os.listdir(os.path.join(ROOT, "docs", "images")))
    assert drawn == committed and len(drawn) == 4, (drawn, committed)


def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    # mkdocs only reports pages left out of the navigation (at INFO level).
    assert "not included in the \"nav\"" not in log, log[-6000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "layers" / "index.html").is_file()
