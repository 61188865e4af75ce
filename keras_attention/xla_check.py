"""TPU readiness checks: lower to XLA with static shapes and scan the result.

A function runs on a TPU when XLA compiles it for the TPU backend, and a
Keras model trains well there when its train step is one XLA program with
static shapes, no host round trips and no dtype the TPU lacks. No TPU is
needed to check most of that: TensorFlow lowers a `jit_compile=True`
function to HLO on any device (`experimental_get_compiler_ir`), and the HLO
says what the program does. This module

- lowers a function (`lower_to_hlo`) or a compiled model's train step
  (`train_step_hlo`) to HLO text, which fails when an op has no XLA kernel;
- scans the HLO (`tpu_incompatibilities`) for dynamic shapes, foreign
  custom calls, host transfers and dtypes the TPU lacks;
- scans the TensorFlow graph (`graph_incompatibilities`) for ops that can
  never run on a TPU (Python callbacks, printing, strings, host placement);
- runs all of it on a model (`check_tpu_ready`).

What the checks can and cannot prove: the HLO is lowered with TensorFlow's
XLA CPU kernels (`XLA_CPU_JIT`). The TPU registers the same tf2xla kernels
for almost every op, and every standard HLO instruction (dot, convolution,
gather, scatter, sort, fft, while, rng, ...) is implemented by the TPU
compiler, so a clean scan means: every op lowers, all shapes are static and
the program needs nothing that TPUs lack. It does not prove that the TPU
compiler accepts the program (a handful of TensorFlow ops have a CPU/GPU
XLA kernel and no TPU one), that it fits in TPU memory, or that it runs
fast (s64 and complex arithmetic, for instance, are emulated). Only a
compile on a TPU proves that.

Example:

>>> import keras
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
>>> model.compile(optimizer="adam", loss="mse")
>>> import numpy as np
>>> batch = (np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"))
>>> check_tpu_ready(model, batch)  # returns None: nothing to report
"""

import re

import tensorflow as tf

# Custom-call targets TPUs implement. The CPU lowering of this package's
# layers and models emits only `Qr` and
# `ProductOfElementaryHouseholderReflectors` (`tf.linalg.qr`, in
# `LinearAttention(feature_map="favor", redraw=True)`): backend-neutral
# calls that XLA's `QrExpander` rewrites into plain HLO, and the very ones
# JAX emits for `qr` on TPUs. The others are what TensorFlow's kernels emit
# for ops that TPUs run (`tf.math.top_k`, `tf.math.approx_max_k`, sharding
# annotations of `tf.distribute`/DTensor).
ALLOWED_CUSTOM_CALLS = frozenset(
    {
        "Qr",
        "ProductOfElementaryHouseholderReflectors",
        "TopK",
        "ApproxTopK",
        "PartialReduce",
        "Sharding",
        "SPMDFullToShardShape",
        "SPMDShardToFullShape",
    }
)
"""Custom-call targets that `tpu_incompatibilities` accepts by default."""

# HLO element types with no TPU support (c128) or only slow software
# emulation (f64, which older TPU stacks reject). c64 is supported (FFT).
UNSUPPORTED_ELEMENT_TYPES = ("f64", "c128")
"""HLO element types reported as TPU-incompatible."""

# TensorFlow ops that run Python, print or talk to the host: no TPU kernel.
HOST_OPS = frozenset(
    {
        "PyFunc",
        "PyFuncStateless",
        "EagerPyFunc",
        "NumpyFunction",
        "Print",
        "PrintV2",
    }
)
"""TensorFlow op types that `graph_incompatibilities` reports (no TPU kernel)."""

# Op-name prefixes of host-only resources (lookup tables live on the host).
HOST_OP_PREFIXES = ("HashTable", "MutableHashTable", "LookupTable")
"""Op-type prefixes of host-only resources that `graph_incompatibilities` reports."""

__all__ = [
    "ALLOWED_CUSTOM_CALLS",
    "HOST_OPS",
    "HOST_OP_PREFIXES",
    "UNSUPPORTED_ELEMENT_TYPES",
    "check_tpu_ready",
    "graph_incompatibilities",
    "lower_to_hlo",
    "tpu_incompatibilities",
    "train_step_hlo",
]

_TYPE = r"(?:pred|token|bf16|c64|c128|[suf]\d+|f8e\w+|f4e\w+)"
_SHAPE = re.compile(r"\b(" + _TYPE + r")\[([^\]]*)\]")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s([a-z][a-z0-9\-]*)\((.*)$"
)
_OP_NAME = re.compile(r'op_name="((?:[^"\\]|\\.)*)"')
_TARGET = re.compile(r'custom_call_target="((?:[^"\\]|\\.)*)"')
_HOST_TRANSFER = re.compile(r"\bis_host_transfer=true\b")
_UNSUPPORTED_OPS = re.compile(
    r"Detected unsupported operations when trying to compile graph \S+ on "
    r"\S+: (.*?)(?:\{\{node|\n|$)"
)
_MAX_PER_KIND = 20


def _function_name(fn):
    return getattr(fn, "__name__", None) or type(fn).__name__


def _lowering_error(fn, error):
    message = str(error)
    unsupported = _UNSUPPORTED_OPS.search(message)
    what = ""
    if unsupported:
        ops = sorted(set(re.findall(r"(\w+) \(No registered", unsupported.group(1))))
        what = f" Ops without an XLA kernel: {', '.join(ops) or unsupported.group(1)}."
    tail = message.strip().splitlines()
    summary = " ".join(tail[:3])[:600]
    return ValueError(
        f"`lower_to_hlo`: `{_function_name(fn)}` does not lower to XLA with "
        f"jit_compile=True.{what} XLA said: {summary}"
    )


def _xla_function(fn):
    if isinstance(fn, tf.types.experimental.PolymorphicFunction):
        if getattr(fn, "_jit_compile", None) is True:
            return fn
        fn = fn.python_function
    return tf.function(fn, jit_compile=True)


def lower_to_hlo(fn, *args):
    """Lowers `fn(*args)` with XLA (`jit_compile=True`) and returns the HLO.

    `fn` is traced with `args` (tensors, arrays or nests of them: their
    shapes are the static shapes the program is compiled for), then every
    op is converted by its XLA kernel. An op without one (`tf.py_function`,
    string ops, ...) makes the lowering fail: that is reported as a
    `ValueError` naming the function and, where TensorFlow says, the ops.
    Errors of `fn` itself (raised while tracing) propagate unchanged.

    Args:
        fn: a Python callable or a `tf.function` (re-wrapped with
            `jit_compile=True` unless it already has it).
        *args: the positional arguments of `fn`.

    Returns:
        The HLO module as text (`stage="hlo"`, before XLA's optimisations).

    Raises:
        ValueError: when `fn` does not lower to XLA.

    Example:

    >>> import tensorflow as tf
    >>> hlo = lower_to_hlo(lambda x: tf.nn.softmax(x), tf.ones((2, 3)))
    >>> "f32[2,3]" in hlo
    True
    """
    function = _xla_function(fn)
    args = tf.nest.map_structure(
        lambda x: x if isinstance(x, tf.TensorSpec) else tf.convert_to_tensor(x),
        args,
    )
    # Trace first: a Python error of `fn` is not a lowering failure.
    function.get_concrete_function(*args)
    try:
        return function.experimental_get_compiler_ir(*args)(stage="hlo")
    except (ValueError, tf.errors.OpError) as error:
        raise _lowering_error(fn, error) from error


def _instructions(hlo_text):
    """Yields `(name, op_name, type_text, opcode, rest, target)` per line.

    Quoted strings (metadata) are blanked out of `type_text` and `rest`;
    lines that are not instructions have `name` and `opcode` `None`.
    """
    for line in hlo_text.splitlines():
        op_name = _OP_NAME.search(line)
        op_name = op_name.group(1) if op_name else ""
        target = _TARGET.search(line)
        stripped = _QUOTED.sub('""', line)
        match = _INSTRUCTION.match(stripped)
        if match is None:
            yield None, op_name, stripped, None, "", None
            continue
        name, type_text, opcode, rest = match.groups()
        yield name, op_name, type_text, opcode, rest, target.group(1) if target else None


def _where(name, op_name):
    if name is None:
        return "the module/computation signature"
    return f"%{name}" + (f" (TensorFlow op {op_name!r})" if op_name else "")


def tpu_incompatibilities(hlo_text, allowed_custom_calls=ALLOWED_CUSTOM_CALLS):
    """Lists what in an HLO module stands in the way of a TPU.

    Scans the text of `lower_to_hlo` (or `train_step_hlo`) instruction by
    instruction for:

    - dynamic dimensions: bounded (`f32[<=8]`, from `tf.where`,
      `tf.boolean_mask`, `tf.unique`, ...) or unbounded (`f32[?]`). TPUs
      compile static shapes; dynamic ones are padded to their bound at best
      and recompiled or rejected at worst;
    - custom calls whose target is not in `allowed_custom_calls` (a custom
      call is an opaque kernel, e.g. a CPU LAPACK or oneDNN call, unless
      XLA itself rewrites it, as it does `Qr`);
    - element types in `UNSUPPORTED_ELEMENT_TYPES` (`f64`, `c128`). A scalar
      `f64` constant that is only converted (TensorFlow's own
      `ResizeBilinear` kernel emits `f64[] constant(0.5)` and converts it to
      `f32`) is folded away by every compiler and not reported;
    - host transfers: `infeed`/`outfeed`, `send`/`recv` with
      `is_host_transfer=true`, and side-effect `token`s, which only ordered
      host I/O (outside compilation, host callbacks) needs.

    HLO has no string type: strings cannot lower at all, so they show up
    as a `lower_to_hlo` failure (or in `graph_incompatibilities`).

    What a clean scan does and does not prove is said in the module
    docstring: the HLO comes from the CPU lowering, and the TPU's support
    of standard HLO instructions is assumed, not checked.

    Args:
        hlo_text: str, an HLO module as text.
        allowed_custom_calls: collection of custom-call targets not to
            report; defaults to `ALLOWED_CUSTOM_CALLS`.

    Returns:
        A list of human-readable problems (str), empty when none was found.
        At most 20 are listed per kind, then a count of the rest.

    Example:

    >>> import tensorflow as tf
    >>> hlo = lower_to_hlo(lambda x: tf.where(x > 0), tf.ones((4,)))
    >>> tpu_incompatibilities(hlo)[0].startswith("dynamic shape")
    True
    """
    found = {}

    def report(kind, text):
        found.setdefault(kind, []).append(text)

    for name, op_name, type_text, opcode, rest, target in _instructions(hlo_text):
        where = _where(name, op_name)
        operands = rest.split("),")[0] if opcode else ""
        for element, dims in _SHAPE.findall(type_text + " " + rest):
            if "<=" in dims or "?" in dims:
                report(
                    "dynamic",
                    f"dynamic shape {element}[{dims}] in {where}: TPUs need "
                    "static shapes",
                )
                break
        if opcode is None:
            continue
        if opcode == "custom-call" and target not in allowed_custom_calls:
            report(
                "custom-call",
                f"custom call {target!r} in {where}: not a target known to "
                f"run on TPUs (allowed: {sorted(allowed_custom_calls)})",
            )
        result_types = {e for e, _ in _SHAPE.findall(type_text)}
        operand_types = {e for e, _ in _SHAPE.findall(operands)}
        for element in UNSUPPORTED_ELEMENT_TYPES:
            scalar_constant = (
                opcode == "constant" and type_text.strip().startswith(f"{element}[]")
            )
            if (element in result_types and not scalar_constant) or (
                element in operand_types and opcode != "convert"
            ):
                report(
                    element,
                    f"element type {element} in {where} ({opcode}): "
                    + (
                        "no TPU support"
                        if element == "c128"
                        else "software-emulated (slow) on TPUs, rejected by older ones"
                    ),
                )
        if opcode in ("infeed", "outfeed"):
            report("host", f"host {opcode} in {where}")
        elif opcode in ("send", "recv", "send-done", "recv-done") and _HOST_TRANSFER.search(
            rest
        ):
            report("host", f"host transfer ({opcode}) in {where}")
        elif "token" in result_types:
            report(
                "token",
                f"side-effect token in {where} ({opcode}): ordered host I/O",
            )
    problems = []
    for texts in found.values():
        unique = list(dict.fromkeys(texts))
        problems += unique[:_MAX_PER_KIND]
        if len(unique) > _MAX_PER_KIND:
            problems.append(f"... and {len(unique) - _MAX_PER_KIND} more like it")
    return problems


def _dtypes(node, args):
    """The dtypes of a NodeDef's input or output args (from the op def)."""
    dtypes = []
    for arg in args:
        if arg.type:
            dtypes.append(arg.type)
        elif arg.type_attr and arg.type_attr in node.attr:
            dtypes.append(node.attr[arg.type_attr].type)
        elif arg.type_list_attr and arg.type_list_attr in node.attr:
            dtypes.extend(node.attr[arg.type_list_attr].list.type)
    return dtypes


def _graph_nodes(graph_def):
    for node in graph_def.node:
        yield "", node
    for function in graph_def.library.function:
        for node in function.node_def:
            yield function.signature.name, node


def graph_incompatibilities(concrete_function):
    """Lists the ops of a traced function that can never run on a TPU.

    Scans the function's graph and every function in its library (loop
    bodies, conditionals, nested `tf.function`s) for:

    - Python callbacks and printing (`HOST_OPS`: `tf.py_function`,
      `tf.numpy_function`, `tf.print`) and host-only lookup tables;
    - string tensors (an op with a `tf.string` input or output: TPUs have
      no string type);
    - ops placed on a CPU by `tf.device`, or marked for outside compilation
      (`_xla_outside_compilation`), which run on the host.

    `Assert` is ignored although its message is a string: XLA compiles it
    to nothing. Unlike `tpu_incompatibilities` this check needs no XLA
    kernels, so it works on functions that do not lower at all and names
    the op the TPU would miss.

    Args:
        concrete_function: a `tf.types.experimental.ConcreteFunction` (e.g.
            `tf.function(fn).get_concrete_function(*args)`) or anything with
            a `graph` attribute.

    Returns:
        A list of human-readable problems (str), empty when none was found.

    Example:

    >>> import tensorflow as tf
    >>> f = tf.function(lambda x: tf.numpy_function(lambda a: a, [x], tf.float32))
    >>> graph_incompatibilities(f.get_concrete_function(tf.ones(2)))[0][:21]
    "op 'PyFunc' (PyFunc):"
    """
    from tensorflow.python.framework import op_def_registry

    graph_def = concrete_function.graph.as_graph_def()
    consumers = {}
    for scope, node in _graph_nodes(graph_def):
        for source in node.input:
            consumers.setdefault((scope, source.lstrip("^").split(":")[0]), []).append(node.op)
    problems = []
    for scope, node in _graph_nodes(graph_def):
        where = f"op {node.name!r} ({node.op})" + (f" in function {scope!r}" if scope else "")
        if node.op in HOST_OPS:
            problems.append(f"{where}: runs Python or prints on the host")
            continue
        if node.op.startswith(HOST_OP_PREFIXES):
            problems.append(f"{where}: lookup tables live on the host")
            continue
        if "CPU" in node.device.upper():
            problems.append(f"{where}: placed on {node.device!r}")
        if "_xla_outside_compilation" in node.attr:
            problems.append(f"{where}: marked for outside compilation (host)")
        if node.op == "Assert":
            continue
        op_def = op_def_registry.get(node.op)
        if op_def is None:  # a call of a library function: scanned itself
            continue
        dtypes = _dtypes(node, op_def.input_arg) + _dtypes(node, op_def.output_arg)
        if tf.string.as_datatype_enum in dtypes:
            users = consumers.get((scope, node.name), [])
            if node.op == "Const" and all(u == "Assert" for u in users):
                continue  # an assertion's message, or a constant nothing reads
            problems.append(f"{where}: string tensors (TPUs have no string type)")
    return problems


def _as_tensors(structure):
    return tf.nest.map_structure(tf.convert_to_tensor, structure)


def _train_step(model, batch):
    """The model's train step as a jit-compiled function and its arguments."""
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            "`train_step_hlo`: the model has no optimizer; call "
            "`model.compile(...)` first."
        )
    if not model.built:
        raise ValueError(
            "`train_step_hlo`: the model is not built; call it on a batch "
            "(or build it) first."
        )
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            "`train_step_hlo`: `batch` must be `(x, y)` or "
            f"`(x, y, sample_weight)`. Received: {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    args = tuple(_as_tensors(part) for part in batch)

    def train_step(*data):
        return model.train_step(data)

    train_step.__name__ = f"{model.name}.train_step"
    return tf.function(train_step, jit_compile=True), args


def train_step_hlo(model, batch):
    """Lowers a compiled Keras model's train step on `batch` to HLO.

    The step is Keras' own `model.train_step((x, y))` (TensorFlow
    backend): forward pass, loss, gradients, optimizer update and metric
    updates, as `model.fit` runs it, compiled as one XLA program for the
    static shapes of `batch`. The optimizer's variables are built first if
    they are not yet. Nothing is executed: the weights do not change.

    Args:
        model: a built `keras.Model`, compiled (it needs its optimizer and
            loss).
        batch: `(x, y)` or `(x, y, sample_weight)`, arrays or tensors (or
            nests of them, as `fit` takes them).

    Returns:
        The HLO module as text.

    Raises:
        ValueError: when the model is not compiled or built, or the step
            does not lower to XLA.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> hlo = train_step_hlo(model, (np.ones((4, 3), "float32"), np.ones((4, 1), "float32")))
    >>> tpu_incompatibilities(hlo)
    []
    """
    function, args = _train_step(model, batch)
    return lower_to_hlo(function, *args)


def check_tpu_ready(model, batch):
    """Raises unless the model's train step lowers cleanly for a TPU.

    Runs `graph_incompatibilities` on the traced train step, then lowers it
    (`train_step_hlo`) and runs `tpu_incompatibilities` on the HLO. What
    that proves, and what it cannot, is in the module docstring.

    Args:
        model: a built, compiled `keras.Model`.
        batch: `(x, y)` or `(x, y, sample_weight)` with the static shapes
            the model will train on (a `drop_remainder=True` batch).

    Returns:
        None.

    Raises:
        ValueError: listing every problem found.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> check_tpu_ready(model, (np.ones((4, 3), "float32"), np.ones((4, 1), "float32")))
    """
    function, args = _train_step(model, batch)
    problems = graph_incompatibilities(function.get_concrete_function(*args))
    try:
        problems += tpu_incompatibilities(lower_to_hlo(function, *args))
    except ValueError as error:
        problems.append(str(error))
    if problems:
        listed = "\n".join(f"- {p}" for p in problems)
        raise ValueError(
            f"`check_tpu_ready`: the train step of model {model.name!r} is "
            f"not TPU-ready:\n{listed}"
        )
