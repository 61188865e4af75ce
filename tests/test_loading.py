"""A saved model loads in a fresh Python process as the README says."""

import json
import os
import subprocess
import sys

import keras
import numpy as np

from keras_attention.models import text_classifier
from keras_attention.models import with_preprocessing

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
TEXTS = ["a good film", "bad"]


def _section():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index("## Save, load and serve")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(section, language):
    """The fenced code blocks of `section` opened with "```" + `language`."""
    blocks, opened, lines = [], None, []
    for line in section.splitlines(keepends=True):
        if not line.startswith("```"):
            lines.append(line)
        elif opened is None:
            opened, lines = line.strip()[3:], []
        else:
            if opened == language:
                blocks.append("".join(lines))
            opened = None
    return blocks


def _fresh_python(code, cwd):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, cwd=str(cwd), timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def _save_raw_model(folder):
    vectorizer = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=8)
    vectorizer.adapt(["a good film", "a bad film", "not good at all"])
    model = text_classifier(vectorizer.vocabulary_size(), 2, 8, hidden_dim=16, num_layers=1, num_heads=2)
    raw = with_preprocessing(model, vectorizer)
    raw.save(os.path.join(str(folder), "model.keras"))
    model.save(os.path.join(str(folder), "token_model.keras"))
    return raw.predict(TEXTS, verbose=0)


def test_the_readme_snippet_loads_a_model_in_a_fresh_process(tmp_path):
    (snippet,) = [b for b in _blocks(_section(), "python") if "load_model(" in b]
    assert "import keras_attention" in snippet
    assert "custom_objects" not in snippet and "safe_mode" not in snippet
    expected = _save_raw_model(tmp_path)
    # The snippet loads "model.keras" from the working folder; the reloaded
    # model still takes a Python list of strings.
    code = snippet + f"\nimport json\nprint(json.dumps(model.predict({TEXTS!r}, verbose=0).tolist()))\n"
    done = _fresh_python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_readme_quotes_what_keras_says_without_the_import(tmp_path):
    # Keras imports the module a saved class names only for its own
    # packages; for ours it raises. The README quotes that message: every
    # part of the quote between "..." is in what Keras prints.
    (quoted,) = [b for b in _blocks(_section(), "") if "Could not locate class" in b]
    _save_raw_model(tmp_path)
    done = _fresh_python("import keras\nkeras.models.load_model('token_model.keras')\n", tmp_path)
    assert done.returncode != 0
    for part in quoted.strip().split("..."):
        part = part.strip(" ,{}\n")
        if part:
            assert part in done.stderr, part
    assert "'registered_name': 'keras_attention>TokenAndPositionEmbedding'" in quoted
