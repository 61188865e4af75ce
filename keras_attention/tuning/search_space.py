"""The search space: which hyperparameters exist and which values are valid.

`SearchSpace.sample(hp)` turns a `keras_tuner.HyperParameters` into one
valid run configuration (attention variant, its arguments, the task
options). Every argument is, at the caller's choice:

- left out: tuned over its default candidates (or, with `tunable=False`,
  frozen at the task's default);
- a value (`hidden_dim=64`): fixed, never an `hp`;
- a list or tuple (`hidden_dim=[32, 64]`): an `hp.Choice` over it;
- a `keras_tuner` hyperparameter object (e.g.
  `keras_tuner.engine.hyperparameters.Int("depth", 1, 4)`): registered as
  is under the argument's name.

Arguments that depend on others draw only from their valid values: the
number of heads divides the width, the key/value heads divide the heads,
windows, ranks and blocks fit the sequence length, and each variant's own
arguments (`window_size` for `"regional"`, `rank` for `"low_rank"`,
`feature_map` for `"linear"`, ...) exist only when that variant is drawn
(`hp.conditional_scope`). When a dependent argument's valid values change
with its parent's value, it is registered once per parent value under a
name that records it (e.g. `num_key_value_heads|num_heads=4`).
"""

import contextlib
import dataclasses

from keras_attention.arguments import argument_error
from keras_attention.layers.attention import registry

_NAME = "hypermodel"

# The variants searched by default: the `(query, value)` variants that suit
# any sequence model.
DEFAULT_VARIANTS = ("multi_head", "regional", "linear", "low_rank", "sparse")
"""The attention variants a search tries unless `attention=` says otherwise."""

# Default candidates of the shared arguments.
CANDIDATES = {
    "num_layers": [1, 2, 3],
    "hidden_dim": [32, 64, 128],
    "num_heads": [1, 2, 4, 8],
    "intermediate_dim": [64, 128, 256],
    "dropout": [0.0, 0.1, 0.2],
    "schedule": ["cosine", "constant"],
}
LEARNING_RATE_RANGE = (1e-4, 1e-2)
KEY_VALUE_HEADS = [1, 2, 4, 8]
# Each variant's own arguments come from its class (`search_space`, a dict
# of `keras_attention.layers.attention.registry.Tunable`): adding a variant adds its
# space. keras-tuner choices take no None: it is searched as "none".
_NONE = "none"


def variant_space(variant):
    """The `Tunable` arguments of registered variant `variant` (`{}` if none)."""
    return dict(getattr(registry.get_class(variant), "search_space", None) or {})


def _all_variant_arguments():
    names = set()
    for variant in registry.available():
        names.update(variant_space(variant))
    return names


SHARED = ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", "dropout")
TRAINING = ("learning_rate", "schedule")
SPACE_ARGUMENTS = ("attention", "num_key_value_heads") + SHARED + TRAINING




def _is_hyperparameter(value):
    try:
        from keras_tuner.engine.hyperparameters import HyperParameter
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, HyperParameter)


@dataclasses.dataclass
class Configuration:
    """One sampled run configuration.

    Attributes:
        attention: str, the registered attention variant.
        attention_kwargs: dict of the variant's constructor arguments.
        options: dict, the task options (the task's defaults updated with
            the sampled sizes, `learning_rate`, `schedule`, ...), as
            `Task.build` takes them.
    """

    attention: str
    attention_kwargs: dict
    options: dict

    def summary(self):
        """A one-line `key=value` description (for tables and logs)."""
        parts = [f"attention={self.attention}"]
        parts += [f"{k}={v}" for k, v in sorted(self.attention_kwargs.items())]
        parts += [
            f"{k}={_short(self.options[k])}"
            for k in SHARED + TRAINING
            if k in self.options
        ]
        return ", ".join(parts)


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class SearchSpace:
    """The valid hyperparameters of a task's model.

    Args:
        defaults: dict, the task's option defaults (`Task.defaults`); the
            frozen value of every argument left out with `tunable=False`
            and the default value of every `hp`.
        sequence_length: int or `None`, the length the attention sees
            (bounds `window_size`, `rank`, `block_size`, `top_k`).
        arguments: dict of the caller's arguments (see the module): space
            arguments (`attention`, `num_layers`, `hidden_dim`, `num_heads`,
            `num_key_value_heads`, `intermediate_dim`, `dropout`,
            `learning_rate`, `schedule`), a variant's own arguments
            (`window_size`, `rank`, `feature_map`, `pattern`, ...) and
            other task options (e.g. `pooling=["mean", "attention"]`).
        tunable: bool; `False` freezes every argument left out at its
            default.
        default_attention: the variant used when `attention` is frozen.
    """

    def __init__(
        self,
        defaults,
        sequence_length=None,
        arguments=None,
        tunable=True,
        default_attention="multi_head",
    ):
        self.defaults = dict(defaults)
        self.sequence_length = sequence_length
        self.arguments = dict(arguments or {})
        self.tunable = bool(tunable)
        self.default_attention = default_attention
        self._check_arguments()

    # ------------------------------------------------------------------
    def _check_arguments(self):
        known = set(SPACE_ARGUMENTS) | _all_variant_arguments() | set(self.defaults)
        for key, value in self.arguments.items():
            if key not in known:
                raise argument_error(
                    _NAME,
                    key,
                    f"is not an argument of the search space or a task option; "
                    f"expected one of {sorted(known)}",
                    f"{key}={value!r}",
                )
            if isinstance(value, (list, tuple)) and not value:
                raise argument_error(_NAME, key, "must not be an empty list", f"{key}={value!r}")
            if key in ("epochs", "steps", "batch_size") and (
                isinstance(value, (list, tuple)) or _is_hyperparameter(value)
            ):
                raise argument_error(
                    _NAME,
                    key,
                    "must be a fixed value: the data and the trial budget are "
                    "set once per search",
                    f"{key}={value!r}",
                )
        for variant in self._values_of("attention", self._attention_candidates()):
            if registry.get_class(variant) is None:
                raise argument_error(
                    _NAME,
                    "attention",
                    f"must name registered attention variants, some of "
                    f"{registry.available()}",
                    f"attention={self.arguments.get('attention')!r}",
                )
        hidden = self._values_of("hidden_dim", CANDIDATES["hidden_dim"])
        heads = self._values_of("num_heads", CANDIDATES["num_heads"])
        if "hidden_dim" in self.arguments:
            # The caller's widths must each have a head count.
            for width in hidden:
                if not any(width % n == 0 for n in heads):
                    raise argument_error(
                        _NAME,
                        "num_heads",
                        f"must divide hidden_dim={width} for some choice",
                        f"num_heads={heads}",
                    )
        elif not any(h % n == 0 for h in hidden for n in heads):
            raise argument_error(
                _NAME,
                "num_heads",
                f"must divide some hidden_dim in {hidden}",
                f"num_heads={heads}",
            )

    def _attention_candidates(self):
        return list(DEFAULT_VARIANTS)

    def _values_of(self, name, candidates):
        """Every value argument `name` can take (for checks)."""
        given = self.arguments.get(name, _MISSING)
        if given is _MISSING:
            if self.tunable:
                return list(candidates)
            return [self._default(name)]
        if isinstance(given, (list, tuple)):
            return list(given)
        if _is_hyperparameter(given):
            values = getattr(given, "values", None)
            return list(values) if values is not None else list(candidates)
        return [given]

    def _default(self, name):
        if name == "attention":
            return self.default_attention
        if name == "schedule":
            return self.defaults.get("schedule", "cosine")
        return self.defaults[name]

    # ------------------------------------------------------------------
    def _argument(self, hp, name, candidates, default, valid=None):
        """Value of `name` for this trial (registering an `hp` if tuned).

        `valid(value)`: the values allowed given the values drawn so far.
        """
        given = self.arguments.get(name, _MISSING)
        if given is _MISSING:
            if not self.tunable or candidates is None:
                return default
            values = list(candidates)
            if default not in values and default is not None:
                values = sorted(values + [default], key=_order)
        elif isinstance(given, (list, tuple)):
            values = list(given)
        elif _is_hyperparameter(given):
            return self._register(hp, name, given, valid)
        else:
            if valid is not None and not valid(given):
                raise argument_error(
                    _NAME,
                    name,
                    "is not valid with the other arguments of this "
                    "configuration",
                    f"{name}={given!r}",
                )
            return given
        if valid is not None:
            values = [v for v in values if valid(v)]
            if not values:
                raise argument_error(
                    _NAME,
                    name,
                    "has no value valid with the other arguments of this "
                    "configuration",
                    f"{name} candidates {given if given is not _MISSING else candidates}",
                )
        if len(values) == 1:
            return values[0]
        start = default if default in values else values[0]
        self._registered[name] = self._name(name)
        if all(isinstance(v, bool) for v in values):
            return bool(hp.Boolean(self._name(name), default=bool(start)))
        return hp.Choice(self._name(name), values, default=start)

    def _register(self, hp, name, hyperparameter, valid):
        config = hyperparameter.get_config()
        config["name"] = self._name(name)
        kind = type(hyperparameter).__name__
        config.pop("conditions", None)
        if kind == "Choice" and valid is not None:
            config["values"] = [v for v in config["values"] if valid(v)]
            if not config["values"]:
                raise argument_error(
                    _NAME,
                    name,
                    "has no value valid with the other arguments of this "
                    "configuration",
                    f"{name}={hyperparameter!r}",
                )
            if config.get("default") not in config["values"]:
                config["default"] = config["values"][0]
        value = getattr(hp, kind)(**config)
        self._registered[name] = config["name"]
        if valid is not None and value is not None and not valid(value):
            raise argument_error(
                _NAME,
                name,
                "drew a value that is not valid with the other arguments",
                f"{name}={value!r}",
            )
        return value

    def _name(self, name):
        # Dependent arguments record their parents' values in their name,
        # so each parent value has its own, valid set of choices.
        return name + "".join(
            f"|{p}={v}" for p, v in self._parents.get(name, ())
        )

    # ------------------------------------------------------------------
    def sample(self, hp):
        """Draws one configuration.

        Args:
            hp: a `keras_tuner.HyperParameters`.

        Returns:
            A `Configuration`.
        """
        self._parents = {}
        self._registered = {}
        length = self.sequence_length
        options = dict(self.defaults)
        options.setdefault("schedule", "cosine")
        for key in self.arguments:
            if key in self.defaults and key not in SPACE_ARGUMENTS:
                options[key] = self._argument(hp, key, None, self.defaults[key])

        attention = self._argument(
            hp, "attention", self._attention_candidates(), self.default_attention
        )
        options["num_layers"] = self._argument(
            hp, "num_layers", CANDIDATES["num_layers"], self.defaults["num_layers"]
        )
        heads = self._values_of("num_heads", CANDIDATES["num_heads"])
        hidden_dim = self._argument(
            hp,
            "hidden_dim",
            CANDIDATES["hidden_dim"],
            self.defaults["hidden_dim"],
            valid=lambda h: any(h % n == 0 for n in heads),
        )
        options["hidden_dim"] = hidden_dim
        widths = [
            h
            for h in self._values_of("hidden_dim", CANDIDATES["hidden_dim"])
            if any(h % n == 0 for n in heads)
        ]
        if self._tuned("hidden_dim") and any(h % n for h in widths for n in heads):
            self._parents["num_heads"] = [("hidden_dim", hidden_dim)]
        num_heads = self._with_parents(
            hp,
            "num_heads",
            lambda: self._argument(
                hp,
                "num_heads",
                CANDIDATES["num_heads"],
                _closest_divisor(self.defaults["num_heads"], hidden_dim),
                valid=lambda n: hidden_dim % n == 0,
            ),
        )
        options["num_heads"] = num_heads
        options["intermediate_dim"] = self._argument(
            hp,
            "intermediate_dim",
            CANDIDATES["intermediate_dim"],
            self.defaults["intermediate_dim"],
        )
        options["dropout"] = self._argument(
            hp, "dropout", CANDIDATES["dropout"], self.defaults["dropout"]
        )
        options["learning_rate"] = self._learning_rate(hp)
        options["schedule"] = self._argument(
            hp, "schedule", CANDIDATES["schedule"], options["schedule"]
        )

        kwargs = {}
        variants = self._values_of("attention", self._attention_candidates())
        kv_variants = [
            v
            for v in variants
            if registry.accepts(registry.get_class(v), "num_key_value_heads")
        ]
        if self._tuned("num_heads"):
            self._parents["num_key_value_heads"] = [("num_heads", num_heads)]

        def key_value_heads():
            with self._scope(hp, "attention", kv_variants):
                if attention in kv_variants:
                    return self._argument(
                        hp,
                        "num_key_value_heads",
                        KEY_VALUE_HEADS,
                        num_heads,
                        valid=lambda k: num_heads % k == 0,
                    )
            return None

        # keras-tuner nests conditions along one chain of parents: the
        # key/value heads hang off the variant, and their name records the
        # heads they divide (one set of valid choices per head count).
        kv = key_value_heads()
        if kv is not None and kv != num_heads:
            kwargs["num_key_value_heads"] = kv
        for variant in variants:
            space = variant_space(variant)
            if not space:
                continue
            with self._scope(hp, "attention", [variant]):
                if attention != variant:
                    continue
                plain = {k: t for k, t in space.items() if t.when is None}
                kwargs.update(self._variant_arguments(hp, plain, length))
                # Arguments that depend on another of the variant's (nested
                # conditions: variant, then that argument).
                for name, tunable in space.items():
                    if tunable.when is None:
                        continue
                    parent, values = tunable.when
                    with self._scope(hp, parent, values):
                        if kwargs.get(parent) in values:
                            kwargs.update(self._variant_arguments(hp, {name: tunable}, length))
        if kwargs.get("position_encoding") == _NONE:
            del kwargs["position_encoding"]
        return Configuration(attention, kwargs, options)

    def random_configuration(self, seed=None):
        """Draws a configuration at random (every active `hp` uniformly).

        Conditional hyperparameters are drawn once their parents are, so
        every configuration the search can reach can come out.

        Args:
            seed: int or `None`.

        Returns:
            `(configuration, values)`: a `Configuration` and the `hp`
            values that give it.
        """
        import random

        import keras_tuner

        rng = random.Random(seed)
        hp = keras_tuner.HyperParameters()
        drawn = set()
        for _ in range(10):
            self.sample(hp)
            new = False
            for parameter in hp.space:
                key = (parameter.name, repr(parameter.conditions))
                if key in drawn or not hp.is_active(parameter):
                    continue
                drawn.add(key)
                hp.values[parameter.name] = parameter.random_sample(
                    rng.randint(0, 2**31 - 1)
                )
                new = True
            if not new:
                break
        return self.sample(hp), dict(hp.values)

    def _variant_arguments(self, hp, space, length):
        out = {}
        for name, tunable in space.items():
            candidates = [_NONE if v is None else v for v in tunable.candidates(length)]
            default = tunable.default_for(length)
            default = _NONE if default is None else default
            fits = None
            if tunable.is_length and length:
                fits = lambda v, length=length: 1 <= v <= length  # noqa: E731
            out[name] = self._argument(hp, name, candidates, default, valid=fits)
        return out

    def _learning_rate(self, hp):
        default = self.defaults["learning_rate"]
        given = self.arguments.get("learning_rate", _MISSING)
        if given is _MISSING and self.tunable:
            low, high = LEARNING_RATE_RANGE
            self._registered["learning_rate"] = "learning_rate"
            return hp.Float(
                "learning_rate",
                min(low, default),
                max(high, default),
                sampling="log",
                default=default,
            )
        return self._argument(hp, "learning_rate", None, default)

    def _tuned(self, name):
        """Whether `name` is an `hp` in this trial (not a fixed value)."""
        return self._registered.get(name) is not None

    def _with_parents(self, hp, name, draw):
        """Draws `name` under the condition of its parents' values."""
        parents = self._parents.get(name)
        if not parents:
            return draw()
        parent, value = parents[0]
        with hp.conditional_scope(self._registered[parent], [value]):
            return draw()

    @contextlib.contextmanager
    def _scope(self, hp, parent, values):
        """`hp.conditional_scope` when `parent` is an `hp`, else nothing."""
        if self._tuned(parent):
            with hp.conditional_scope(self._registered[parent], list(values)):
                yield
        else:
            yield


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()


def _order(value):
    return (str(type(value)), value)


def _closest_divisor(value, total):
    """`value` if it divides `total`, else the nearest divisor below it."""
    value = max(1, min(value, total))
    while total % value:
        value -= 1
    return value
