"""The search space: fixed / choice / hp arguments, conditional variant
arguments, and (property-based) every reachable configuration builds and
trains."""

import sys

import keras
import keras_tuner
import numpy as np
import pytest

from keras_attention import tuning
from keras_attention.layers.attention import registry
from keras_attention.tuning.search_space import variant_space


def _hypermodel(listops, tunable=True, **arguments):
    task, options, data = listops
    return tuning.hypermodel(task, data, tunable=tunable, options=options, **arguments)


def _get(hp, name):
    (parameter,) = [p for p in hp.space if p.name == name]
    return parameter


def _check_valid(config, length):
    options, kwargs = config.options, config.attention_kwargs
    assert options["hidden_dim"] % options["num_heads"] == 0
    kv = kwargs.get("num_key_value_heads", options["num_heads"])
    assert options["num_heads"] % kv == 0
    for name in ("window_size", "rank", "block_size", "top_k"):
        if name in kwargs:
            assert 1 <= kwargs[name] <= length
    own = set(variant_space(config.attention))
    others = set().union(*(variant_space(v) for v in registry.available())) - own
    assert not others & set(kwargs), (config.attention, kwargs)


def test_defaults_are_the_tasks_defaults(listops):
    task, options, _ = listops
    hm = _hypermodel(listops)
    config = hm.configuration(keras_tuner.HyperParameters())
    assert config.attention == "multi_head"
    assert config.attention_kwargs == {}
    for key in ("hidden_dim", "num_layers", "num_heads", "intermediate_dim", "dropout", "learning_rate"):
        assert config.options[key] == options[key]
    assert config.options["schedule"] == "cosine"


def test_tunable_false_freezes_everything_but_the_given_choices(listops):
    hm = _hypermodel(listops, tunable=False, dropout=[0.0, 0.3])
    hp = keras_tuner.HyperParameters()
    hm.configuration(hp)
    assert set(hp.values) == {"dropout"}


def test_fixed_values_are_not_hyperparameters_and_lists_are_choices(listops):
    hm = _hypermodel(listops, attention="linear", hidden_dim=32, feature_map=["relu", "favor"])
    hp = keras_tuner.HyperParameters()
    config = hm.configuration(hp)
    assert "attention" not in hp.values and "hidden_dim" not in hp.values
    assert config.attention == "linear" and config.options["hidden_dim"] == 32
    choice = _get(hp, "feature_map")
    assert list(choice.values) == ["relu", "favor"]


def test_a_keras_tuner_hyperparameter_is_used_as_is(listops):
    from keras_tuner.engine.hyperparameters import Int

    hm = _hypermodel(listops, num_layers=Int("depth", 1, 4))
    hp = keras_tuner.HyperParameters()
    hm.configuration(hp)
    parameter = _get(hp, "num_layers")
    assert (parameter.min_value, parameter.max_value) == (1, 4)


def test_variant_arguments_exist_only_under_their_variant(listops):
    hm = _hypermodel(listops)
    hp = keras_tuner.HyperParameters()
    hm.configuration(hp)
    # Each variant's own argument is conditioned on `attention == variant`.
    hp.values["attention"] = "regional"
    hm.configuration(hp)
    window = _get(hp, "window_size")
    assert [c.values for c in window.conditions] == [["regional"]]
    assert not hp.is_active("rank")


def test_head_counts_that_divide_no_width_are_never_drawn(listops):
    # No default width (32, 64, 128) divides by 3.
    hm = _hypermodel(listops, num_heads=[3, 4])
    for seed in range(8):
        config, _ = hm.space.random_configuration(seed)
        assert config.options["num_heads"] == 4


def test_heads_divide_the_width_for_any_width_choice(listops):
    hm = _hypermodel(listops, hidden_dim=[24, 64], num_heads=[1, 2, 4, 8])
    for seed in range(12):
        config, _ = hm.space.random_configuration(seed)
        assert config.options["hidden_dim"] % config.options["num_heads"] == 0


@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"hidden_dim": 30, "num_heads": 4}, "`num_heads` must divide hidden_dim=30"),
        ({"hidden_dim": [30, 64], "num_heads": [4, 8]}, "`num_heads` must divide hidden_dim=30"),
        ({"num_heads": 7}, "`num_heads` must divide some hidden_dim"),
        ({"attention": "nope"}, "must name registered attention variants"),
        ({"colour": 3}, "`colour` is not an argument of the search space"),
        ({"batch_size": [8, 16]}, "`batch_size` must be a fixed value"),
        ({"window_size": []}, "must not be an empty list"),
    ],
)
def test_bad_arguments_name_the_argument(listops, arguments, message):
    with pytest.raises(ValueError, match="`hypermodel`") as error:
        _hypermodel(listops, **arguments)
    assert message in str(error.value)


def test_a_fixed_value_invalid_for_the_length_is_rejected(listops):
    hm = _hypermodel(listops, attention="regional", window_size=100)
    with pytest.raises(ValueError, match="`window_size` is not valid"):
        hm.configuration(keras_tuner.HyperParameters())


# ---------------------------------------------------------------------------
# Property-based: random draws over the whole space.


def _draws(listops, count, seed0=0):
    hm = _hypermodel(listops)
    length = listops[2].info["sequence_length"]
    seen = set()
    for seed in range(seed0, seed0 + count):
        config, _ = hm.space.random_configuration(seed)
        _check_valid(config, length)
        seen.add(config.attention)
        yield hm, config
    assert seen >= set(tuning.DEFAULT_VARIANTS), seen


def test_every_sampled_configuration_builds(listops):
    task, _, data = listops
    for _, config in _draws(listops, 30):
        keras.backend.clear_session()
        model = tuning.build_configuration(task, data, config)
        assert model.output.shape[-1] == data.info["num_classes"], config.summary()


def _train_one_step(listops, config):
    task, _, data = listops
    keras.backend.clear_session()
    model = tuning.build_configuration(task, data, config)
    assert model.jit_compile is True
    x, y = next(iter(data.train))
    loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss), config.summary()


def test_sampled_configurations_train_one_step(listops):
    # One draw with XLA here (compiling is the slow part); the `slow` test
    # below trains 30 draws of the whole space.
    hm = _hypermodel(listops, num_layers=1, hidden_dim=16, intermediate_dim=16)
    for seed in (5,):
        config, _ = hm.space.random_configuration(seed)
        _train_one_step(listops, config)


@pytest.mark.slow
def test_every_sampled_configuration_trains_one_step(listops):
    for _, config in _draws(listops, 30, seed0=100):
        _train_one_step(listops, config)


def test_every_swappable_variant_can_be_searched(listops):
    for variant in registry.available():
        hm = _hypermodel(listops, attention=variant, hidden_dim=16, num_layers=1)
        config, _ = hm.space.random_configuration(0)
        keras.backend.clear_session()
        tuning.build_configuration(listops[0], listops[2], config)


@pytest.mark.parametrize("kind", ["random", "hyperband", "bayesian"])
def test_the_tuners_oracle_reaches_only_valid_configurations(listops, kind, tmp_path):
    # What a search really draws: keras-tuner explores the conditional
    # space, then its oracle fills in the values.
    hm = _hypermodel(listops)
    tuner = tuning.make_tuner(hm, tuner=kind, max_trials=40, max_epochs=3, directory=str(tmp_path))
    names = {p.name for p in tuner.oracle.get_space().space}
    for name in ("attention", "window_size", "rank", "feature_map", "pattern", "block_size", "top_k"):
        assert name in names, names
    length = listops[2].info["sequence_length"]
    rng = np.random.default_rng(0)
    variants = set()
    for _ in range(40):
        trial = tuner.oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        config = hm.configuration(trial.hyperparameters.copy())
        _check_valid(config, length)
        variants.add(config.attention)
        tuner.oracle.update_trial(trial.trial_id, {"val_accuracy": float(rng.random())})
        trial.status = "COMPLETED"
        tuner.oracle.end_trial(trial)
    assert len(variants) >= 3, variants


def test_bayesian_without_scipy_says_what_to_install(listops, tmp_path, monkeypatch):
    # scipy and scikit-learn are dependencies; an install without them
    # (e.g. `pip install --no-deps`) gets a message, not a traceback.
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(ImportError, match="`tune`: `tuner='bayesian'` needs scipy"):
        tuning.make_tuner(_hypermodel(listops), tuner="bayesian", directory=str(tmp_path))


def test_tuning_is_an_attribute_of_the_package_imported_on_first_use():
    import subprocess

    code = (
        "import sys, keras_attention; assert 'keras_tuner' not in sys.modules; "
        "t = keras_attention.tuning; assert 'keras_tuner' in sys.modules; print(t.tune.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("tune")
