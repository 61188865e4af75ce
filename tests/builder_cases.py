"""One small, deterministic case per model builder: build, compile, batch.

Shared by the tests that must cover *every* builder the same way (training
under `tf.distribute` strategies, XLA lowering). Each case is a function
`case(jit_compile=True, **compile_kwargs) -> (model, batch)` where `model`
is compiled with the builder's own compile helper and `batch(seed, size)`
returns `(inputs, targets)` of `size` examples.

Dropout and augmentation are off, so a training step is a deterministic
function of the weights and the batch. Padding depends only on an example's
index within its half of the batch, so the two halves that two replicas see
hold the same number of valid tokens: a masked mean loss computed per
replica and averaged then equals the single-device loss.
"""

import numpy as np

from keras_attention import models

SMALL = dict(hidden_dim=16, num_layers=1, num_heads=2, dropout=0.0)


def _rng(seed):
    return np.random.default_rng(seed)


def _halves(make, seed, size):
    """Joins two half-batches made by `make(rng, half)` (same padding)."""
    if size % 2:
        raise ValueError(f"batch size must be even, got {size}")
    first = make(_rng(seed), size // 2)
    second = make(_rng(seed + 1000), size // 2)
    return _concat(first, second)


def _concat(a, b):
    if isinstance(a, dict):
        return {k: _concat(a[k], b[k]) for k in a}
    if isinstance(a, (list, tuple)):
        return type(a)(_concat(x, y) for x, y in zip(a, b))
    return np.concatenate([a, b], axis=0)


def _tokens(rng, half, vocabulary, length, padded_from=None):
    ids = rng.integers(1, vocabulary, (half, length)).astype("int32")
    if padded_from is not None and half > 1:
        ids[1, padded_from:] = 0
    return ids


def text_classifier(jit_compile=True, **compile_kwargs):
    model = models.text_classifier(50, 3, 12, attention="multi_head", **SMALL)
    models.compile_classifier(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        return _tokens(rng, half, 50, 12, padded_from=7), rng.integers(0, 3, half).astype("int32")

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def seq2seq(jit_compile=True, **compile_kwargs):
    model = models.seq2seq(30, 12, 7, 5, attention="linear", **SMALL)
    models.compile_seq2seq(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        source = _tokens(rng, half, 30, 7, padded_from=4)
        labels = rng.integers(3, 12, (half, 5)).astype("int32")
        labels[:, 3] = 2
        labels[:, 4:] = 0
        inputs = np.concatenate([np.ones((half, 1), "int32"), labels[:, :-1]], 1)
        inputs[inputs == 2] = 0
        return [source, inputs], labels

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def language_model(jit_compile=True, **compile_kwargs):
    model = models.language_model(40, 10, attention="multi_head", **SMALL)
    models.compile_language_model(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        tokens = _tokens(rng, half, 40, 11, padded_from=7)
        return tokens[:, :-1], tokens[:, 1:]

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def question_answering(jit_compile=True, **compile_kwargs):
    model = models.question_answering(50, 16, attention="regional", **SMALL)
    models.compile_question_answering(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        tokens = np.zeros((half, 16), "int32")
        segments = np.zeros((half, 16), "int32")
        for row in range(half):
            context = 9 - row
            packed = [2, *rng.integers(4, 50, 3), 3]
            tokens[row, : len(packed)] = packed
            tokens[row, len(packed) : len(packed) + context] = rng.integers(4, 50, context)
            segments[row, len(packed) : len(packed) + context] = 1
        starts = rng.integers(5, 8, half).astype("int32")
        return [tokens, segments], (starts, starts + 1)

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def sequential_recommender(jit_compile=True, **compile_kwargs):
    model = models.sequential_recommender(30, 8, attention="multi_head", **SMALL)
    models.compile_sequential_recommender(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        history = rng.integers(1, 31, (half, 8)).astype("int32")
        history[0, :5] = 0
        features = {"history": history, "target_item": rng.integers(1, 31, half).astype("int32")}
        targets = {
            "next_item": rng.integers(1, 31, half).astype("int32"),
            "rating": rng.uniform(1, 5, half).astype("float32"),
        }
        return features, targets

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def image_classifier(jit_compile=True, **compile_kwargs):
    model = models.image_classifier((8, 8, 1), 3, patch_size=2, attention="linear", **SMALL)
    models.compile_classifier(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        return rng.uniform(0, 1, (half, 8, 8, 1)).astype("float32"), rng.integers(0, 3, half).astype("int32")

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def image_segmenter(jit_compile=True, **compile_kwargs):
    model = models.image_segmenter(16, 3, patch_size=4, attention="multi_head", **SMALL)
    models.compile_segmenter(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        images = rng.uniform(0, 255, (half, 16, 16, 3)).astype("float32")
        return images, rng.integers(0, 3, (half, 16, 16, 1)).astype("int32")

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def audio_classifier(jit_compile=True, **compile_kwargs):
    model = models.audio_classifier(800, 3, num_mel_bins=16, attention="regional", **SMALL)
    models.compile_classifier(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        t = np.arange(800) / 8000
        tones = rng.uniform(200, 2000, (half, 1))
        waves = np.sin(2 * np.pi * tones * t) * 3000 + rng.normal(0, 30, (half, 800))
        return waves.astype("float32"), rng.integers(0, 3, half).astype("int32")

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def speech_recognizer(jit_compile=True, **compile_kwargs):
    model = models.speech_recognizer(3200, 6, sample_rate=8000, num_mel_bins=16, attention="multi_head", **SMALL)
    models.compile_speech_recognizer(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        t = np.arange(3200) / 8000
        tones = rng.uniform(200, 2000, (half, 1))
        waves = np.sin(2 * np.pi * tones * t) * 3000 + rng.normal(0, 30, (half, 3200))
        labels = rng.integers(1, 7, (half, 4)).astype("int32")
        labels[:, 3:] = 0
        return waves.astype("float32"), labels

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def speech_enhancer(jit_compile=True, **compile_kwargs):
    model = models.speech_enhancer(800, frame_length=64, frame_step=16, attention="multi_head", **SMALL)
    models.compile_speech_enhancer(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        t = np.arange(800) / 8000
        clean = np.sin(2 * np.pi * rng.uniform(200, 2000, (half, 1)) * t) * 0.5
        return (clean + rng.normal(0, 0.2, (half, 800))).astype("float32"), clean.astype("float32")

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def object_detector(jit_compile=True, **compile_kwargs):
    model = models.object_detector(
        16, 3, num_queries=4, patch_size=4, hidden_dim=16, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, dropout=0.0, attention="multi_head",
    )
    models.compile_object_detector(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        images = rng.random((half, 16, 16, 1)).astype("float32")
        boxes = np.concatenate([rng.uniform(0.3, 0.7, (half, 2, 2)), rng.uniform(0.1, 0.4, (half, 2, 2))], -1)
        labels = np.stack([rng.integers(0, 3, half), np.full(half, -1)], -1)  # one object each
        return images, np.asarray(models.pack_detection_targets(boxes, labels))

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def video_classifier(jit_compile=True, **compile_kwargs):
    model = models.video_classifier(4, 8, 3, tubelet_size=(2, 4, 4), attention="linear", **SMALL)
    models.compile_video_classifier(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        clips = rng.integers(0, 256, (half, 4, 8, 8, 3)).astype("uint8")
        return clips, rng.integers(0, 3, half).astype("int32")

    return model, lambda seed=0, size=4: _halves(make, seed, size)


def multimodal_classifier(jit_compile=True, **compile_kwargs):
    model = models.multimodal_classifier(8, 6, 20, 3, patch_size=4, attention="multi_head", **SMALL)
    models.compile_classifier(model, jit_compile=jit_compile, **compile_kwargs)

    def make(rng, half):
        features = {
            "image": rng.uniform(0, 1, (half, 8, 8, 3)).astype("float32"),
            "tokens": _tokens(rng, half, 20, 6, padded_from=4),
        }
        return features, rng.integers(0, 3, half).astype("int32")

    return model, lambda seed=0, size=4: _halves(make, seed, size)


CASES = {
    case.__name__: case
    for case in (
        text_classifier,
        seq2seq,
        language_model,
        question_answering,
        sequential_recommender,
        image_classifier,
        image_segmenter,
        audio_classifier,
        speech_recognizer,
        speech_enhancer,
        object_detector,
        video_classifier,
        multimodal_classifier,
    )
}
