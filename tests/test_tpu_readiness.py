"""TPU readiness: every builder's train step, every registered attention
layer and every other public layer (forward in training mode and gradient)
lowers with XLA (`jit_compile=True`) for static shapes, and neither the HLO nor the TensorFlow graph uses anything a TPU
lacks (`keras_attention.xla_check`). The negative tests show each check
failing where it must. The training pipelines of `keras_attention.data`
batch with `drop_remainder=True`, so their batches have static shapes.
"""

import doctest
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from builder_cases import CASES

from keras_attention import data as data_lib
from keras_attention import xla_check
from keras_attention.layers.attention import registry


def _clean(hlo):
    problems = xla_check.tpu_incompatibilities(hlo)
    assert problems == [], "\n".join(problems)


# --------------------------------------------------------------------------
# Builders: the whole train step (forward, loss, gradients, optimizer,
# metrics) as `fit` runs it.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_builder_train_step_is_tpu_ready(name):
    model, batch = CASES[name](jit_compile=True)
    assert model.jit_compile is True
    x, y = batch(seed=0, size=4)
    function, args = xla_check._train_step(model, (x, y))
    assert xla_check.graph_incompatibilities(function.get_concrete_function(*args)) == []
    hlo = xla_check.lower_to_hlo(function, *args)
    _clean(hlo)
    # The program is the whole step for these static shapes: it takes every
    # input array and updates the weights (an optimizer step writes
    # `iterations`, an s64 scalar, back).
    entry = hlo[hlo.index("\nENTRY") :]
    for array in tf.nest.flatten((x, y)):
        dtype = {"float32": "f32", "int32": "s32", "uint8": "u8"}[array.dtype.name]
        assert f"{dtype}[{','.join(map(str, array.shape))}]" in hlo
    assert "parameter(0)" in entry and "s64[]" in hlo
    assert len(model.optimizer.variables) > 1  # built by `_train_step`


def test_check_tpu_ready_passes_a_builder_model():
    # It runs the two checks above again (and raises on a problem): once is
    # enough to see it agree.
    model, batch = CASES["text_classifier"](jit_compile=True)
    assert xla_check.check_tpu_ready(model, batch(seed=0, size=4)) is None


# --------------------------------------------------------------------------
# Registered attention layers: forward + gradient.
# --------------------------------------------------------------------------
def _normal(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _sequence_call(length=8, source=None, causal=False, masked=True):
    """Inputs of a `(query, value)` layer: self- or cross-attention."""
    query = _normal(0, 2, length, 8)
    if source is None:
        inputs = {"query": query, "value": query}
    else:
        inputs = {"query": query, "value": _normal(1, 2, source, 8)}
    if masked:
        mask = np.ones((2, source or length), bool)
        mask[1, -3:] = False
        inputs["value_mask"] = mask
    return inputs, {"use_causal_mask": causal}


SEQUENCE = {
    # name: (constructor arguments, call: (inputs, static keyword arguments))
    "additive": ({}, _sequence_call(source=6)),
    "additive_general": ({"score": "general"}, _sequence_call(source=6)),
    "distributed": ({"num_heads": 2, "key_dim": 4, "num_shards": 2}, _sequence_call(causal=True)),
    "dynamic": ({"num_heads": 2, "key_dim": 4}, _sequence_call(causal=True)),
    "linear": ({"num_heads": 2, "key_dim": 4, "chunk_size": 4}, _sequence_call(causal=True)),
    "linear_favor": (
        {"num_heads": 2, "key_dim": 4, "feature_map": "favor", "redraw": True},
        _sequence_call(source=6),
    ),
    "low_rank": ({"num_heads": 2, "key_dim": 4, "max_length": 8, "rank": 4}, _sequence_call()),
    "multi_head": ({"num_heads": 2, "key_dim": 4}, _sequence_call(causal=True)),
    "multi_head_cross_gqa": (
        {"num_heads": 4, "key_dim": 4, "num_key_value_heads": 2},
        _sequence_call(source=6),
    ),
    "multi_head_rope_chunked": (
        {"num_heads": 2, "key_dim": 4, "position_encoding": "rope", "implementation": "chunked"},
        _sequence_call(causal=True),
    ),
    "multi_head_alibi_window": (
        {"num_heads": 2, "key_dim": 4, "position_encoding": "alibi", "window_size": 3},
        _sequence_call(causal=True),
    ),
    "regional": ({"num_heads": 2, "key_dim": 4, "window_size": 3}, _sequence_call(causal=True)),
    "regional_block": (
        {"num_heads": 2, "key_dim": 4, "mode": "block", "region_size": 4, "num_neighbors": 1},
        _sequence_call(),
    ),
    "scaled_dot_product": ({}, _sequence_call(source=6)),
    "sparse": ({"num_heads": 2, "key_dim": 4, "block_size": 2}, _sequence_call()),
    "sparse_strided": ({"num_heads": 2, "key_dim": 4, "pattern": "strided", "block_size": 2}, _sequence_call(causal=True)),
    "sparse_fixed": ({"num_heads": 2, "key_dim": 4, "pattern": "fixed", "block_size": 2}, _sequence_call()),
    "sparse_layout": (
        {"num_heads": 2, "key_dim": 4, "pattern": "layout", "block_size": 4, "layout": [[1, 0], [1, 1]]},
        _sequence_call(),
    ),
    "sparse_topk": (
        {"num_heads": 2, "key_dim": 4, "pattern": "topk", "top_k": 3, "chunk_size": 4},
        _sequence_call(causal=True),
    ),
}


def _frames():
    mask = np.ones((2, 3), bool)
    mask[1, 2] = False
    return {"inputs": _normal(0, 2, 3, 4, 8), "frame_mask": mask}, {}


def _two_streams():
    a_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    b_mask = np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], bool)
    return {"a": _normal(0, 2, 4, 6), "b": _normal(1, 2, 5, 10), "a_mask": a_mask, "b_mask": b_mask}, {}


def _pooled():
    mask = np.ones((2, 6), bool)
    mask[0, 4:] = False
    return {"inputs": _normal(0, 2, 6, 8), "mask": mask}, {}


def _target():
    mask = np.ones((2, 5), bool)
    mask[1, 3:] = False
    return {"query": _normal(0, 2, 8), "value": _normal(1, 2, 5, 8), "value_mask": mask}, {}


STRUCTURAL = {
    "multimodal": ({"num_heads": 2, "key_dim": 4}, _two_streams()),
    "multimodal_co": ({"num_heads": 2, "key_dim": 4, "mode": "co"}, _two_streams()),
    "multimodal_merged": ({"num_heads": 2, "key_dim": 4, "mode": "merged"}, _two_streams()),
    "pooling": ({"num_queries": 2, "num_heads": 2}, _pooled()),
    "spatiotemporal": ({"num_heads": 2, "key_dim": 4}, _frames()),
    "spatiotemporal_joint": ({"num_heads": 2, "key_dim": 4, "mode": "joint", "causal": True}, _frames()),
    "spatiotemporal_factorized": ({"num_heads": 2, "key_dim": 4, "mode": "factorized"}, _frames()),
    "target": ({"hidden_units": (8, 4)}, _target()),
}

LAYER_CASES = {**SEQUENCE, **STRUCTURAL}


def _variant(case):
    """The registry name a case builds (`"sparse_topk"` -> `"sparse"`)."""
    names = registry.available(structural=True)
    return max((n for n in names if case == n or case.startswith(n + "_")), key=len)


def test_every_registered_attention_layer_has_a_case():
    # Reuses the registry: a variant registered later fails here until it
    # gets a case below.
    assert {_variant(case) for case in LAYER_CASES} == set(registry.available(structural=True))


def _forward_and_gradient(layer, inputs, static):
    keys = sorted(inputs)
    floats = [k for k in keys if inputs[k].dtype == np.float32]

    def step(*values):
        feed = dict(zip(keys, values))
        with tf.GradientTape() as tape:
            for k in floats:
                tape.watch(feed[k])
            outputs = layer(**feed, **static, training=True)
            loss = tf.add_n([tf.reduce_sum(tf.square(o)) for o in tf.nest.flatten(outputs)])
        sources = layer.trainable_variables + [feed[k] for k in floats]
        return loss, tape.gradient(loss, sources)

    return step, [inputs[k] for k in keys]


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_attention_layer_forward_and_gradient_are_tpu_ready(case):
    arguments, (inputs, static) = LAYER_CASES[case]
    layer = registry.get(_variant(case), **arguments)
    layer(**inputs, **static)  # builds the weights outside the program
    step, args = _forward_and_gradient(layer, inputs, static)
    function = tf.function(step, jit_compile=True)
    concrete = function.get_concrete_function(*args)
    assert xla_check.graph_incompatibilities(concrete) == []
    # Every weight and every float input gets a gradient in the program.
    grads = concrete.structured_outputs[1]
    floats = sum(value.dtype == np.float32 for value in inputs.values())
    assert len(grads) == len(layer.trainable_variables) + floats
    # Weightless: scaled dot-product; one kernel: additive with the
    # "general" score; every other case has at least two weights.
    assert len(layer.trainable_variables) >= {"scaled_dot_product": 0, "additive_general": 1}.get(case, 2)
    assert all(g is not None for g in grads), [
        v.path for v, g in zip(layer.trainable_variables, grads) if g is None
    ]
    hlo = xla_check.lower_to_hlo(function, *args)
    _clean(hlo)
    for name, value in inputs.items():
        dtype = "f32" if value.dtype == np.float32 else "pred"
        assert f"{dtype}[{','.join(map(str, value.shape))}]" in hlo, name


# --------------------------------------------------------------------------
# The checks can fail.
# --------------------------------------------------------------------------
def _double(x):
    return x * 2


def test_numpy_function_is_reported_and_does_not_lower():
    def step(x):
        return tf.numpy_function(_double, [x], tf.float32) + 1

    x = tf.ones((4, 3))
    problems = xla_check.graph_incompatibilities(tf.function(step).get_concrete_function(x))
    assert len(problems) == 1 and problems[0].startswith("op 'PyFunc' (PyFunc)")
    assert "runs Python" in problems[0]
    with pytest.raises(ValueError, match=r"`step` does not lower to XLA.*Ops without an XLA kernel: PyFunc"):
        xla_check.lower_to_hlo(step, x)


def test_py_function_print_strings_and_cpu_placement_are_reported():
    def step(x):
        tf.print("x:", x)
        y = tf.py_function(_double, [x], tf.float32)
        with tf.device("/CPU:0"):
            z = tf.reduce_sum(x)
        label = tf.strings.as_string(z)
        return y, z, label

    problems = xla_check.graph_incompatibilities(tf.function(step).get_concrete_function(tf.ones((2,))))
    text = "\n".join(problems)
    assert "(PrintV2): runs Python or prints" in text
    assert "(EagerPyFunc): runs Python" in text
    assert "(Sum): placed on '/device:CPU:0'" in text
    assert "(AsString): string tensors" in text
    assert "(StringFormat): string tensors" in text  # tf.print's message


def test_ops_in_nested_functions_are_found():
    @tf.function
    def inner(x):
        return tf.ensure_shape(tf.numpy_function(_double, [x], tf.float32), x.shape)

    def step(x):
        return tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, inner(v)), (0, x))[1]

    problems = xla_check.graph_incompatibilities(tf.function(step).get_concrete_function(tf.ones((2,))))
    assert len(problems) == 1 and "(PyFunc)" in problems[0] and "in function" in problems[0]


def test_assertions_are_not_strings_to_report():
    def step(x):
        tf.debugging.assert_positive(x, message="must be positive")
        return x + 1

    x = tf.ones((3,))
    assert xla_check.graph_incompatibilities(tf.function(step).get_concrete_function(x)) == []
    _clean(xla_check.lower_to_hlo(step, x))


@pytest.mark.parametrize(
    "op",
    [
        lambda x: tf.where(x > 0.5),
        lambda x: tf.boolean_mask(x, x > 0.5),
        lambda x: tf.unique(tf.reshape(x, [-1]))[0],
    ],
    ids=["where", "boolean_mask", "unique"],
)
def test_dynamic_shapes_are_reported(op):
    hlo = xla_check.lower_to_hlo(op, tf.ones((4, 3)))
    problems = xla_check.tpu_incompatibilities(hlo)
    assert problems and all(p.startswith("dynamic shape") for p in problems), problems
    assert any("[<=12" in p for p in problems), problems


def test_float64_is_reported():
    hlo = xla_check.lower_to_hlo(lambda x: tf.cast(x, tf.float64) * 2, tf.ones((4, 3)))
    problems = xla_check.tpu_incompatibilities(hlo)
    assert problems and all(p.startswith("element type f64") for p in problems), problems
    assert any("(multiply)" in p for p in problems)
    # An f64 input is reported as well.
    hlo = xla_check.lower_to_hlo(lambda x: x + 1, tf.ones((2,), tf.float64))
    assert any("(parameter)" in p for p in xla_check.tpu_incompatibilities(hlo))


def test_hlo_scan_on_hand_written_text():
    hlo = """HloModule m, entry_computation_layout={(f32[?,4]{1,0})->f32[4]{0}}

ENTRY %main (p: f32[?,4]) -> f32[4] {
  %p = f32[?,4]{1,0} parameter(0)
  %c = f64[] constant(0.5), metadata={op_type="ResizeBilinear" op_name="resize"}
  %h = f32[] convert(f64[] %c)
  %z = c128[4]{0} custom-call(f32[?,4]{1,0} %p), custom_call_target="lapack_zgeev", metadata={op_name="eig"}
  %k = (f32[4]{0}, s32[4]{0}) custom-call(f32[4]{0} %x), custom_call_target="TopK"
  %t = token[] after-all()
  %o = token[] outfeed(f32[4]{0} %x, token[] %t), outfeed_shape=f32[4]{0}
  %s = (f32[4]{0}, u32[], token[]) send(f32[4]{0} %x, token[] %t), channel_id=1, is_host_transfer=true
  ROOT %r = f32[4]{0} reduce(f32[?,4]{1,0} %p, f32[] %h), dimensions={0}, metadata={op_name="f32[<=3] in a name"}
}
"""
    problems = xla_check.tpu_incompatibilities(hlo)
    text = "\n".join(problems)
    assert "dynamic shape f32[?,4] in the module/computation signature" in text
    assert "dynamic shape f32[?,4] in %p" in text and "in %r (TensorFlow op" in text
    assert "dynamic shape f32[?,4] in %z" in text  # a dynamic operand
    assert "custom call 'lapack_zgeev' in %z (TensorFlow op 'eig')" in text
    assert "element type c128 in %z" in text
    assert "%k" not in text and "%c" not in text and "%h" not in text  # allowed / folded
    assert "host outfeed in %o" in text
    assert "host transfer (send) in %s" in text
    assert "side-effect token in %t (after-all)" in text
    assert len(problems) == 9, problems


def test_train_step_hlo_and_check_tpu_ready_report_problems():
    @keras.saving.register_keras_serializable(package="test_tpu_readiness")
    class Unique(keras.layers.Layer):
        def call(self, x):
            kept = tf.boolean_mask(x, x[:, 0] > 0)  # a data-dependent length
            return x + tf.reduce_mean(kept)

    inputs = keras.Input((3,), batch_size=4)
    model = keras.Model(inputs, keras.layers.Dense(1)(Unique()(inputs)))
    model.compile(optimizer="adam", loss="mse")
    batch = (_normal(0, 4, 3), _normal(1, 4, 1))
    assert any(p.startswith("dynamic shape") for p in xla_check.tpu_incompatibilities(xla_check.train_step_hlo(model, batch)))
    with pytest.raises(ValueError, match=r"(?s)model 'functional.*' is not TPU-ready:\n- dynamic shape"):
        xla_check.check_tpu_ready(model, batch)
    with pytest.raises(ValueError, match="the model has no optimizer"):
        xla_check.train_step_hlo(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]), batch)
    with pytest.raises(ValueError, match=r"`batch` must be `\(x, y\)`.*list of length 1"):
        xla_check.train_step_hlo(model, [batch[0]])


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(xla_check, globs=vars(xla_check).copy()):
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 8


# --------------------------------------------------------------------------
# Pipelines: training batches are `drop_remainder=True`, so fully static.
# --------------------------------------------------------------------------
def _static(spec, batch_size):
    shapes = [tuple(s.shape) for s in tf.nest.flatten(spec)]
    assert shapes and all(None not in s for s in shapes), shapes
    assert all(s[0] == batch_size for s in shapes), shapes
    return shapes


def _mnist_canvases(self, split, *args, **kwargs):
    # The `small` config's layout: 32 x 32 canvases with 1-2 digits.
    def example(i):
        count = 1 + i % 2
        boxes = np.array([[0.1, 0.1, 0.4, 0.5], [0.5, 0.4, 0.9, 0.8]], "float32")[:count]
        canvas = np.zeros((32, 32, 1), "uint8")
        canvas[4:12, 4:14] = 255
        return {"canvas": canvas, "objects": {"bbox": boxes, "label": np.arange(count, dtype="int64") + i % 8}}

    return tf.data.Dataset.from_generator(
        lambda: (example(i) for i in range(10)),
        output_signature={
            "canvas": tf.TensorSpec((32, 32, 1), tf.uint8),
            "objects": {"bbox": tf.TensorSpec((None, 4), tf.float32), "label": tf.TensorSpec((None,), tf.int64)},
        },
    )


def _spoken_digit(self, split, *args, **kwargs):
    names = [f"{d}_{s}_{i}.wav" for d in range(2) for s in ("ann", "bob") for i in range(7)]
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_generator(
        lambda: (
            {"audio": rng.integers(-99, 99, 50 + 10 * i).astype("int64"), "audio/filename": n, "label": int(n[0])}
            for i, n in enumerate(names)
        ),
        output_signature={
            "audio": tf.TensorSpec((None,), tf.int64),
            "audio/filename": tf.TensorSpec((), tf.string),
            "label": tf.TensorSpec((), tf.int64),
        },
    )


def _squad(self, split, *args, **kwargs):
    words = ["red", "cat", "sat", "on", "a", "blue", "mat"]
    contexts = [" ".join(words[i:] + words[:i]) for i in range(5)]
    answers = [c.split()[2] for c in contexts]
    starts = [c.index(" " + a) + 1 for c, a in zip(contexts, answers)]
    return tf.data.Dataset.from_tensor_slices(
        {
            "id": [f"q{i}" for i in range(5)],
            "title": ["t"] * 5,
            "context": contexts,
            "question": [f"what is {a}" for a in answers],
            "answers": {"text": [[a] for a in answers], "answer_start": np.array([[s] for s in starts], "int32")},
        }
    )


def _mock_pets(self, *args, **kwargs):
    images = [np.full((18 + i, 20, 3), 60 * i, "uint8") for i in range(4)]
    masks = [np.ones((18 + i, 20, 1), "uint8") for i in range(4)]
    return tf.data.Dataset.from_generator(
        lambda: ({"image": im, "segmentation_mask": m} for im, m in zip(images, masks)),
        output_signature={
            "image": tf.TensorSpec((None, None, 3), tf.uint8),
            "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8),
        },
    )


def _listops(tmp_path):
    config = data_lib.ListopsConfig(name="tiny_tpu", seed=3, train_size=12, validation_size=4, test_size=4, min_length=8, max_length=20)
    return data_lib.load_listops("train", data_dir=str(tmp_path), config=config, batch_size=4)


def _recommendation(tmp_path):
    interactions = data_lib.generate_behaviour(num_users=12, num_items=20, num_categories=4, min_length=5, max_length=8, seed=0)
    return data_lib.sequential_recommendation_data(interactions, sequence_length=6).train.dataset(4, shuffle=True)


class TpuImageTextToy(tfds.core.GeneratorBasedBuilder):
    """Six captioned images (the name differs from tests/data's builder)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(6, 5, 3)),
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["no", "yes"]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6), "test": self._generate_examples(3)}

    def _generate_examples(self, count):
        for i in range(count):
            image = np.full((6, 5, 3), 40 * i, "uint8")
            yield i, {"image": image, "text": f"a square number {i}", "label": i % 2}


def _image_text(tmp_path):
    TpuImageTextToy(data_dir=str(tmp_path)).download_and_prepare()
    return data_lib.image_text_classification_data(
        "tpu_image_text_toy", data_dir=str(tmp_path), image_size=8, sequence_length=5, batch_size=4
    ).train


def _mock(call, **mock):
    def load(tmp_path):
        with tfds.testing.mock_data(**mock):
            return call(tmp_path).train

    return load


def _voc_images(self, split, *args, **kwargs):
    def example(i):
        count = 1 + i % 3
        bbox = np.array([[0.1, 0.2, 0.5, 0.6], [0.5, 0.4, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]], "float32")[:count]
        return {
            "image": np.full((12 + i, 20, 3), 10 * i, "uint8"),
            "objects": {"bbox": bbox, "label": np.arange(count, dtype="int64"), "is_difficult": np.zeros(count, bool)},
        }

    return tf.data.Dataset.from_generator(
        lambda: (example(i) for i in range(10)),
        output_signature={
            "image": tf.TensorSpec((None, 20, 3), tf.uint8),
            "objects": {
                "bbox": tf.TensorSpec((None, 4), tf.float32),
                "label": tf.TensorSpec((None,), tf.int64),
                "is_difficult": tf.TensorSpec((None,), tf.bool),
            },
        },
    )


PIPELINES = {
    "detection_data": _mock(
        lambda tmp: data_lib.detection_data("voc/2007", str(tmp), image_size=16, max_objects=3, batch_size=4, shuffle_buffer=8),
        as_dataset_fn=_voc_images,
    ),
    "image_classification_data": _mock(lambda _: data_lib.image_classification_data("mnist", batch_size=4), num_examples=10),
    "image_text_classification_data": _image_text,
    "load_listops": _listops,
    "mnist_detection_data": _mock(
        lambda tmp: data_lib.mnist_detection_data(data_dir=str(tmp), config="small", batch_size=4, shuffle_buffer=8),
        as_dataset_fn=_mnist_canvases,
    ),
    "segmentation_data": _mock(
        lambda _: data_lib.segmentation_data(image_size=8, batch_size=2, shuffle_buffer=4, cache=False),
        as_dataset_fn=_mock_pets,
    ),
    "sequential_recommendation_data": _recommendation,
    "speech_enhancement_data": _mock(
        lambda _: data_lib.speech_enhancement_data(num_samples=64, test_speakers=("bob",), batch_size=4, shuffle_buffer=8),
        as_dataset_fn=_spoken_digit,
    ),
    "speech_recognition_data": _mock(lambda _: data_lib.speech_recognition_data(num_samples=64, max_label_length=40, batch_size=2), num_examples=6),
    "spoken_digit_data": _mock(lambda _: data_lib.spoken_digit_data(num_samples=64, batch_size=4, shuffle_buffer=8), as_dataset_fn=_spoken_digit),
    "squad_data": _mock(
        lambda _: data_lib.squad_data(sequence_length=16, question_length=4, vocabulary_size=30, batch_size=2),
        as_dataset_fn=_squad,
    ),
    "text_classification_data": _mock(lambda _: data_lib.text_classification_data("glue/sst2", sequence_length=6, vocabulary_size=50, batch_size=4), num_examples=10),
    "translation_data": _mock(
        lambda _: data_lib.translation_data("flores/neen", source_length=6, target_length=5, source_vocabulary_size=50, target_vocabulary_size=50, batch_size=2, test_split=None),
        num_examples=6,
    ),
    "video_classification_data": _mock(lambda _: data_lib.video_classification_data("ucf101", frames=2, image_size=8, batch_size=2, shuffle_buffer=4), num_examples=4),
}


def test_every_pipeline_has_a_case():
    # The package's loaders: `*_data` functions (returning `.train`/`.test`
    # datasets) and `load_listops`. A new one fails here until it has a case.
    loaders = {
        name
        for name, function in vars(data_lib).items()
        if inspect.isfunction(function) and (name.endswith("_data") or name.startswith("load_"))
    }
    assert loaders == set(PIPELINES)
    for name in loaders:
        assert "drop_remainder=" in inspect.getsource(inspect.getmodule(vars(data_lib)[name])), name


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_training_pipeline_batches_are_static(name, tmp_path):
    train = PIPELINES[name](tmp_path)
    batch_size = 2 if name in ("segmentation_data", "speech_recognition_data", "squad_data", "translation_data", "video_classification_data") else 4
    shapes = _static(train.element_spec, batch_size)
    # The static spec is the truth: every batch has it (the remainder is
    # dropped, never a smaller last batch).
    count = 0
    for batch in train:
        count += 1
        assert [tuple(t.shape) for t in tf.nest.flatten(batch)] == shapes
    assert count >= 1


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_pipeline_turns_model_autotuning_off(name, tmp_path):
    # `keras_attention.data.feeding.prefetched` ends every pipeline: with
    # tf.data's model-based autotuning on, `fit` stalled in about one run in
    # three on the 2-core machine.
    assert PIPELINES[name](tmp_path).options().autotune.enabled is False


# --------------------------------------------------------------------------
# The other public layers (blocks, embeddings, pooling, augmentation,
# convolutional attention): forward in training mode + gradient.
# --------------------------------------------------------------------------
def _tokens():
    ids = np.random.default_rng(0).integers(1, 20, (2, 5)).astype("int32")
    ids[1, 3:] = 0
    return ids


def _other_layers():
    from keras_attention import layers as ka_layers

    sequence = _normal(0, 2, 5, 8)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    images = _normal(1, 2, 6, 6, 8)
    return {
        # name: (layer factory, inputs dict, static keyword arguments)
        "CBAM": (lambda: ka_layers.CBAM(reduction=2, kernel_size=3), {"inputs": images}, {}),
        "ChannelAttention": (lambda: ka_layers.ChannelAttention(reduction=2), {"inputs": images}, {}),
        "SpatialAttention": (lambda: ka_layers.SpatialAttention(kernel_size=3), {"inputs": images}, {}),
        "FeedForward": (lambda: ka_layers.FeedForward(16, dropout=0.1), {"inputs": sequence}, {}),
        "TransformerEncoder": (
            lambda: ka_layers.TransformerEncoder(16, 2, dropout=0.1),
            {"inputs": sequence, "padding_mask": mask},
            {},
        ),
        "TransformerDecoder": (
            lambda: ka_layers.TransformerDecoder(16, 2, dropout=0.1),
            {"decoder_sequence": sequence, "encoder_sequence": _normal(2, 2, 4, 8), "decoder_padding_mask": mask},
            {},
        ),
        "AxialTransformerEncoder": (
            lambda: ka_layers.AxialTransformerEncoder(2, 16, 2, dropout=0.1),
            {"inputs": images},
            {},
        ),
        "ClassToken": (lambda: ka_layers.ClassToken(), {"inputs": sequence}, {}),
        "LearnedQueries": (lambda: ka_layers.LearnedQueries(3), {"inputs": sequence}, {}),
        "PositionEmbedding": (lambda: ka_layers.PositionEmbedding(5), {"inputs": sequence}, {}),
        "RotaryEmbedding": (lambda: ka_layers.RotaryEmbedding(), {"inputs": _normal(3, 2, 5, 2, 8)}, {}),
        "SinusoidalPositionEncoding": (lambda: ka_layers.SinusoidalPositionEncoding(), {"inputs": sequence}, {}),
        "TokenAndPositionEmbedding": (
            lambda: ka_layers.TokenAndPositionEmbedding(20, 5, 8, mask_zero=True),
            {"inputs": _tokens()},
            {},
        ),
        "MaskedAveragePooling": (lambda: ka_layers.MaskedAveragePooling(), {"inputs": sequence, "mask": mask}, {}),
        "RandomShift": (lambda: ka_layers.RandomShift(2, seed=1), {"inputs": _normal(4, 2, 8, 8, 3)}, {}),
        "SpecAugment": (
            lambda: ka_layers.SpecAugment(max_time_shift=2, max_time_mask=3, max_freq_mask=2, seed=1),
            {"inputs": _normal(5, 2, 16, 8)},
            {},
        ),
        "SpeedPerturbation": (lambda: ka_layers.SpeedPerturbation(0.1, seed=1), {"inputs": _normal(6, 2, 64)}, {}),
        "FrequencyWarp": (lambda: ka_layers.FrequencyWarp(0.1, seed=1), {"inputs": _normal(10, 2, 16, 8)}, {}),
        "ShortTimeFourierTransform": (lambda: ka_layers.ShortTimeFourierTransform(16, 4), {"inputs": _normal(8, 2, 64)}, {}),
        "InverseShortTimeFourierTransform": (
            lambda: ka_layers.InverseShortTimeFourierTransform(16, 4, 64),
            {"inputs": _normal(9, 2, 21, 9, 2)},
            {},
        ),
        "Dropout": (lambda: ka_layers.Dropout(0.5, seed=1), {"inputs": sequence}, {}),
        "Dice": (lambda: ka_layers.Dice(), {"inputs": _normal(7, 4, 8)}, {}),
    }


OTHER_LAYERS = sorted(_other_layers())


@pytest.mark.parametrize("name", OTHER_LAYERS)
def test_other_public_layers_are_tpu_ready(name):
    factory, inputs, static = _other_layers()[name]
    layer = factory()
    if "training" in inspect.signature(layer.call).parameters:
        static = {**static, "training": True}
    layer(**inputs, **static)  # builds the weights outside the program
    keys = sorted(inputs)
    floats = [k for k in keys if inputs[k].dtype == np.float32]

    def step(*values):
        feed = dict(zip(keys, values))
        with tf.GradientTape() as tape:
            for k in floats:
                tape.watch(feed[k])
            outputs = layer(**feed, **static)
            loss = tf.add_n([tf.reduce_sum(tf.square(tf.cast(o, tf.float32))) for o in tf.nest.flatten(outputs)])
        return loss, tape.gradient(loss, layer.trainable_variables + [feed[k] for k in floats])

    args = [inputs[k] for k in keys]
    function = tf.function(step, jit_compile=True)
    assert xla_check.graph_incompatibilities(function.get_concrete_function(*args)) == []
    _clean(xla_check.lower_to_hlo(function, *args))


def test_every_public_layer_is_covered():
    # Registered attention layers above, every other public layer here: a
    # new layer fails this test until it gets a case.
    from keras_attention import layers as ka_layers

    public = {
        name for name, value in vars(ka_layers).items()
        if isinstance(value, type) and issubclass(value, keras.layers.Layer)
    }  # fmt: skip
    registered = {registry.class_from_name(name).__name__ for name in registry.available(structural=True)}
    abstract = {"BaseAttention", "SingleHeadAttention"}
    assert set(OTHER_LAYERS) <= public and len(public) > len(OTHER_LAYERS) + 10
    assert public - registered - abstract - set(OTHER_LAYERS) == set()
