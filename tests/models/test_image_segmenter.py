import keras
import numpy as np
import pytest

from model_checks import check_builder_model
from keras_attention.models.image_segmenter import compile_segmenter
from keras_attention.models.image_segmenter import image_segmenter

TINY = dict(image_size=16, num_classes=3, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2)


def _batch(shape=(16, 16, 3), batch=2):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch,) + shape).astype("uint8")
    masks = rng.integers(0, 3, (batch,) + shape[:2]).astype("int32")
    return images, masks


@pytest.mark.parametrize(
    "attention,kwargs,export",
    [
        ("multi_head", {}, True),  # compiled by compile_segmenter
        ("linear", {"attention_gates": False, "upsampling": "transpose", "patch_size": 2}, False),
        ("regional", {"patch_size": 2, "image_size": (8, 12), "attention_kwargs": {"window_size": 3}}, False),
    ],
)
def test_builds_trains_saves_exports(attention, kwargs, export, tmp_path):
    arguments = dict(TINY, attention=attention)
    arguments.update(kwargs)
    model = image_segmenter(**arguments)
    height, width = model.input.shape[1:3]
    images, masks = _batch((height, width, 3))
    if export:
        compile_segmenter(model)
        loss = None
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    (logits,) = check_builder_model(model, images, masks, tmp_path, export=export, loss=loss)
    assert logits.shape == (2, height, width, 3)
    assert model.input.dtype == "uint8"


def test_layout():
    model = image_segmenter(**TINY)
    names = [layer.name for layer in model.layers]
    # Skips at strides 1 and 2, tokens at stride 4, gates on both skips.
    assert model.get_layer("stem_0_conv").strides == (1, 1)
    assert model.get_layer("stem_1_conv").strides == (2, 2)
    assert model.get_layer("patch_embedding").output.shape == (None, 4, 4, 16)
    assert "decoder_1_attention_gate_gated" in names and "decoder_0_attention_gate_gated" in names
    assert "encoder_0" in names
    ungated = image_segmenter(**dict(TINY, patch_size=8), attention_gates=False)
    assert not any("attention_gate" in layer.name for layer in ungated.layers)
    assert ungated.get_layer("stem_2_conv").output.shape == (None, 4, 4, 8)


def test_compile_segmenter():
    model = compile_segmenter(image_segmenter(**TINY), ignore_class=2, weight_decay=0.05)
    assert model.jit_compile is True
    assert model.loss.ignore_class == 2 and model.loss.from_logits
    assert model.optimizer.weight_decay == 0.05


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image_size": 18}, r"image_segmenter.*image_size.*divisible by patch_size=4.*\(18, 18\)"),
        ({"image_size": (16,)}, r"image_segmenter.*image_size"),
        ({"patch_size": 6, "image_size": 24}, r"image_segmenter.*patch_size.*power of two.*patch_size=6"),
        ({"patch_size": 1}, r"image_segmenter.*patch_size.*power of two"),
        ({"num_classes": 1}, r"image_segmenter.*num_classes.*>= 2"),
        ({"num_heads": 3}, r"image_segmenter.*num_heads.*must divide hidden_dim=16"),
        ({"upsampling": "nearest"}, r"image_segmenter.*upsampling.*one of \['bilinear', 'transpose'\]"),
        ({"dropout": 1.5}, r"image_segmenter.*dropout"),
        ({"attention": "nope"}, r"image_segmenter.*attention.*one of \[.*'multi_head'.*Received: attention='nope'"),
    ],
)
def test_bad_config(kwargs, match):
    arguments = dict(TINY)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        image_segmenter(**arguments)


