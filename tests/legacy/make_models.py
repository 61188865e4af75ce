"""Writes the `.keras` files that `test_legacy_models.py` loads.

They were written with the package as it was laid out on 2026-12-06 (every
layer module directly under `keras_attention/layers/`), so that the test
shows that files saved before a change of layout still load and compute the
same outputs. Re-running this script overwrites them: only do so when the
serialized names themselves are meant to change.

    python tests/legacy/make_models.py
"""

import os

import keras
import numpy as np

import keras_attention as ka

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layout_2026_12")
SMALL = dict(hidden_dim=8, num_layers=1, num_heads=2, dropout=0.0)


def inputs(name):
    rng = np.random.default_rng(0)
    if name.startswith("text"):
        return rng.integers(1, 30, (2, 16)).astype("int32")
    if name == "image":
        return rng.integers(0, 255, (2, 8, 8, 3)).astype("uint8")
    if name == "audio":
        return (rng.standard_normal((2, 800)) * 0.1).astype("float32")
    if name == "recommender":
        return {"history": rng.integers(1, 20, (2, 6)).astype("int32"),
                "target_item": rng.integers(1, 20, (2,)).astype("int32")}
    if name == "decoder":
        return rng.integers(1, 30, (2, 10)).astype("int32")
    raise ValueError(name)


def models():
    m = ka.models
    yield "text_multi_head", m.text_classifier(30, 3, 16, attention="multi_head", attention_kwargs={"position_encoding": "rope"}, **SMALL)
    yield "text_regional", m.text_classifier(30, 3, 16, attention="regional", attention_kwargs={"window_size": 4}, pooling="attention", **SMALL)
    yield "text_linear", m.text_classifier(30, 3, 16, attention="linear", pooling="first", **SMALL)
    yield "text_low_rank", m.text_classifier(30, 3, 16, attention="low_rank", **SMALL)
    yield "text_sparse", m.text_classifier(30, 3, 16, attention="sparse", attention_kwargs={"block_size": 4}, **SMALL)
    yield "text_dynamic", m.text_classifier(30, 3, 16, attention="dynamic", **SMALL)
    yield "text_additive", m.text_classifier(30, 3, 16, attention="additive", **SMALL)
    yield "text_scaled_dot_product", m.text_classifier(30, 3, 16, attention="scaled_dot_product", **SMALL)
    yield "image", m.image_classifier((8, 8, 3), 3, patch_size=4, conv_attention="cbam", pooling="class_token", augmentation=True, **SMALL)
    yield "audio", m.audio_classifier(800, 3, num_mel_bins=16, augmentation=True, speed_perturbation=0.1, **SMALL)
    yield "recommender", m.sequential_recommender(20, 6, **SMALL)
    yield "decoder", m.language_model(30, 10, **SMALL)


def main():
    os.makedirs(HERE, exist_ok=True)
    keras.utils.set_random_seed(0)
    for name, model in models():
        x = inputs(name)
        outputs = model.predict(x, verbose=0)
        model.save(os.path.join(HERE, f"{name}.keras"))
        flat = outputs if isinstance(outputs, dict) else {"output": outputs}
        np.savez(os.path.join(HERE, f"{name}.npz"), **{k: np.asarray(v) for k, v in flat.items()})
        print(name, os.path.getsize(os.path.join(HERE, f"{name}.keras")))


if __name__ == "__main__":
    main()
