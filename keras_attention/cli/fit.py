"""`keras-attention fit`: train, evaluate, save, export, draw attention maps.

Writes into `--output`:

- `model.keras`: the trained model (`keras.models.load_model` loads it
  after `import keras_attention`, without `custom_objects`);
- `export/`: a SavedModel (`tf.saved_model.load(...).serve(x)`);
- `metrics.json`: test metrics, trivial baselines, parameters, time,
  steps/s, peak memory, and the run's settings (`evaluate`/`predict` read
  them);
- `history.csv`: per-epoch training and validation metrics;
- `attention/*.png`: attention maps of a few test examples;
- `backup/` while training: the resumable checkpoint. Interrupting
  (Ctrl-C, SIGTERM) and re-running the same command resumes from the last
  finished epoch; the folder is removed when training completes.

`--strategy mirrored|multiworker|tpu` trains under a `tf.distribute`
strategy (`keras_attention.distribute`): the model is built and compiled in
the strategy's scope, the batch size stays the global one. Under
`multiworker` every worker runs the same command with its own `TF_CONFIG`;
only the chief writes the run folder (the others write into a temporary
folder that is removed at the end).
"""

import contextlib
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

from keras_attention.cli import checkpoint
from keras_attention.cli.options import UsageError
from keras_attention.cli.options import check_attention
from keras_attention.cli.options import model_options
from keras_attention.cli.options import parse_json
from keras_attention.tasks import run_output
from keras_attention.tasks.run_folder import RunFolder

INTERRUPTED = 130
STRATEGIES = ("mirrored", "multiworker", "tpu")


def add_parser(sub, add_data, add_model, add_training):
    parser = sub.add_parser(
        "fit",
        help="train a model on a task (default: the embedded ListOps)",
        description=(
            "Build the task's model with the chosen attention, train it with "
            "XLA (jit_compile=True), evaluate it on the test split, and write "
            "model.keras, export/ (SavedModel), metrics.json, history.csv and "
            "attention maps into --output. Interrupt it (Ctrl-C) and re-run "
            "the same command to resume."
        ),
    )
    add_data(parser)
    parser.add_argument("--attention", default="multi_head", help="registered attention variant (see `keras-attention list`)")
    add_model(parser)
    add_training(parser)
    parser.add_argument(
        "--strategy",
        default=None,
        metavar="NAME",
        help="train under a tf.distribute strategy: mirrored (the GPUs of this machine, "
        "or --devices logical CPUs), multiworker (several processes or machines, "
        "cluster in TF_CONFIG) or tpu (default: none, one device)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="with --strategy mirrored: use the first N GPUs, or split the CPU into "
        "N logical devices on a machine without GPUs (default: all GPUs, else the CPU)",
    )
    parser.add_argument("--output", default=None, help="output folder (default runs/<task>-<attention>)")
    parser.add_argument("--maps", type=int, default=2, help="test examples to draw attention maps for (0: none)")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run in --output (kept whole until the new one is written), "
        "or discard an unfinished run with other settings",
    )
    parser.set_defaults(handler=run)
    return parser


def peak_memory_mib():
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _throughput_callback():
    """A callback measuring training steps per second, leaving out the
    first (compiling) epoch when there are later ones."""
    import keras

    class Throughput(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.steps = time.perf_counter(), 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((self.steps, time.perf_counter() - self.start))

        def steps_per_second(self):
            timed = self.epochs[1:] or self.epochs
            seconds = sum(t for _, t in timed)
            return sum(s for s, _ in timed) / seconds if seconds else None

    return Throughput()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _attention_maps(model, task, data, count, folder):
    """Draws the attention maps of `count` test examples; returns paths."""
    from keras_attention import viz

    if count <= 0:
        return []
    inputs, _ = next(iter(data.test.take(1)))
    inputs = _slice(inputs, count)
    maps = viz.attention_weights(model, inputs)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, weights in maps.items():
        if weights.ndim != 4:
            continue
        for i in range(min(count, weights.shape[0])):
            labels = task.token_labels(_slice(inputs, i, i + 1), data)
            path = os.path.join(folder, f"example{i}_{name.replace('/', '_')}.png")
            viz.plot_attention(
                weights[i],
                tokens=labels if labels and len(labels) == weights.shape[2] else None,
                key_tokens=labels if labels and len(labels) == weights.shape[3] else None,
                title=f"{name}, test example {i}",
                path=path,
            )
            paths.append(path)
    return paths


def _slice(inputs, start, stop=None):
    import tensorflow as tf

    if stop is None:
        start, stop = 0, start
    return tf.nest.map_structure(lambda t: t[start:stop], inputs)


def _configuration(args, task, dataset, attention_kwargs, options):
    """What makes a run this run: stored with its checkpoint and compared
    when it is resumed."""
    return {
        "task": task.name,
        "dataset": dataset,
        "attention": args.attention,
        "attention_kwargs": attention_kwargs,
        "options": options,
        "seed": args.seed,
        "strategy": args.strategy,
    }


def check_strategy_arguments(args):
    """Checks `--strategy` and `--devices` (values only, nothing started).

    Raises `UsageError` naming the option, what it takes and what it got.
    """
    strategy = getattr(args, "strategy", None)
    devices = getattr(args, "devices", None)
    if strategy is not None and strategy not in STRATEGIES:
        raise UsageError(
            f"--strategy must be one of {', '.join(STRATEGIES)} (or left out: one device). "
            f"Received: --strategy {strategy!r}"
        )
    if devices is not None:
        if strategy != "mirrored":
            raise UsageError(
                "--devices is only used with --strategy mirrored (multiworker reads its "
                "cluster from TF_CONFIG, tpu uses every TPU core). "
                f"Received: --devices {devices} with --strategy {strategy!r}"
            )
        if devices < 1:
            raise UsageError(f"--devices must be a positive integer. Received: --devices {devices}")


def make_strategy(args):
    """The `tf.distribute` strategy `--strategy` names, or `None`.

    Runs before any model is built (splitting the CPU into logical devices
    has to come before TensorFlow initialises them). A strategy that cannot
    start here (no TPU, no or a bad `TF_CONFIG`, more GPUs asked for than
    present) is a `UsageError`.
    """
    if args.strategy is None:
        return None
    from keras_attention import distribute

    try:
        return distribute.get_strategy(args.strategy, devices=args.devices)
    except (ValueError, RuntimeError) as error:
        raise UsageError(f"--strategy {args.strategy}: {error}") from None


def _usage(error):
    """A builder's or pipeline's `ValueError`/`TypeError` as a usage error."""
    return UsageError(str(error).strip().splitlines()[0] if str(error).strip() else repr(error))


def prepare(args, log=print):
    """Checks everything a `fit` command says before any work.

    Returns `(task, dataset, attention_kwargs, options, folder, config,
    state, strategy)`: the `RunFolder`, the run's configuration, the
    checkpoint state to resume (or `None`) and the `tf.distribute` strategy
    (or `None`). Raises `UsageError`. Nothing is created on disk (an
    interrupted save is finished, see `RunFolder.recover`).
    """
    from keras_attention.tasks import get_task

    check_strategy_arguments(args)
    check_attention(args.attention)
    attention_kwargs = parse_json("--attention-kwargs", args.attention_kwargs)
    task = get_task(args.task)
    given = model_options(args)
    try:
        task.check_options(given)
    except ValueError as error:
        raise UsageError(str(error)) from None
    options = task.options(given)
    dataset = args.dataset or task.default_dataset
    folder = RunFolder(args.output or os.path.join("runs", f"{args.task}-{args.attention}"))
    if os.path.exists(folder.path) and not os.path.isdir(folder.path):
        raise UsageError(f"--output {folder.path!r} is a file, not a folder")
    folder.check_links()
    if folder.recover() == "committed":
        log(f"[keras-attention] {folder.path}: finished writing the run that was interrupted while saving")
    config = _configuration(args, task, dataset, attention_kwargs, options)
    state = checkpoint.read_state(folder.backup, log=log)
    if state is not None and checkpoint.differences(state["config"], config):
        if not args.overwrite:
            checkpoint.check_matches(state, config, folder.path)
        log(f"[keras-attention] --overwrite: discarding the unfinished run in {folder.backup}")
        state = None
    if state is None and folder.occupied() and not args.overwrite:
        what = "a finished run" if folder.finished() else "files of a run"
        raise UsageError(
            f"--output {folder.path!r} already holds {what} "
            f"({', '.join(folder.occupied())}). Pass --overwrite to replace it "
            "(the old run stays whole until the new one is written), or choose "
            "another --output."
        )
    strategy = make_strategy(args)
    try:
        task.check_build(args.attention, attention_kwargs, options)
    except (ValueError, TypeError) as error:
        raise _usage(error) from None
    return task, dataset, attention_kwargs, options, folder, config, state, strategy


def _distributed(data, strategy):
    """`data` with its splits sharded by example under a multi-worker
    strategy (every worker generates the same data and keeps its part)."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return data
    from keras_attention import distribute

    for split in ("train", "validation", "test"):
        dataset = getattr(data, split)
        if dataset is not None:
            setattr(data, split, distribute.shard_by_example(dataset))
    return data


def train(args, log=print):
    """Runs `fit`; returns the metrics dict (raises KeyboardInterrupt)."""
    import keras

    task, dataset, attention_kwargs, options, folder, config, state, strategy = prepare(args, log)
    log(f"[keras-attention] task {task.name!r} on {dataset!r}: loading data")
    try:
        data = task.load(dataset, args.data_dir, options)
    except ValueError as error:
        raise _usage(error) from None
    data = _distributed(data, strategy)
    keras.utils.set_random_seed(args.seed)
    with _scope(strategy):
        try:
            model = task.build(data, args.attention, attention_kwargs, options)
        except (ValueError, TypeError) as error:
            raise _usage(error) from None
    # The chief (or the only process) resumes from and writes `folder`;
    # other workers resume from it too (all replicas start at the same
    # epoch) but write into a temporary folder.
    with _writer_folder(folder, strategy) as writer:
        parameters = model.count_params()
        baselines = task.baselines(data)
        replicas = 1 if strategy is None else strategy.num_replicas_in_sync
        where = "" if strategy is None else f" under --strategy {args.strategy} ({replicas} replica(s))"
        log(
            f"[keras-attention] {args.attention!r} attention, {parameters:,} "
            f"parameters; training {options['epochs']} epoch(s) "
            f"{'with' if model.jit_compile is True else 'without'} XLA{where} on the "
            f"{data.train_split!r} split"
            + (f", validating on {data.validation_split!r}" if data.validation is not None else "")
            + "".join(f"; {k} {v:.4f}" for k, v in baselines.items())
        )

        os.makedirs(writer.path, exist_ok=True)
        initial_epoch, history = 0, []
        if state is not None:
            with _scope(strategy):
                initial_epoch, history = checkpoint.restore(model, folder.backup, state, log=log)
            log(f"[keras-attention] resuming from the checkpoint in {folder.backup} (epoch {initial_epoch} done)")
        elif writer is folder and os.path.lexists(folder.backup):
            shutil.rmtree(folder.backup)  # an unreadable or discarded checkpoint
        throughput = _throughput_callback()
        saver = checkpoint.callback(writer.backup, config, history)
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        start = time.perf_counter()
        try:
            model.fit(
                # With `steps`, epochs are slices of one endless pass, so a
                # step count that does not divide the split (or exceeds it)
                # neither truncates an epoch nor drops a partial cache.
                data.train.repeat() if options.get("steps") else data.train,
                validation_data=data.validation,
                epochs=options["epochs"],
                initial_epoch=initial_epoch,
                steps_per_epoch=options.get("steps"),
                callbacks=[*task.callbacks(data, data.validation), saver, throughput],
                verbose=1 if sys.stdout.isatty() else 2,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
        train_seconds = time.perf_counter() - start

        results = task.evaluate(model, data.test, data)
        staging = writer.stage()
        model_path, export_path = run_output.save_model_files(
            model, task, data, staging, export=not args.no_export
        )
        run_output.verify(model_path)
        maps = _attention_maps(model, task, data, args.maps, os.path.join(staging, "attention"))
        checkpoint.write_history(os.path.join(staging, "history.csv"), saver.history_rows)

        def final(path):
            return None if path is None else os.path.join(writer.path, os.path.relpath(path, staging))

        metrics = run_output.write_metrics(
            os.path.join(staging, "metrics.json"),
            task=task,
            data=data,
            dataset=dataset,
            data_dir=args.data_dir,
            attention=args.attention,
            attention_kwargs=attention_kwargs,
            options=options,
            test=results,
            model=model,
            model_path=final(model_path),
            export_path=final(export_path),
            train_seconds=round(train_seconds, 1),
            steps_per_second=_round(throughput.steps_per_second()),
            peak_memory_mib=round(peak_memory_mib(), 1),
            resumed=state is not None,
            attention_maps=[final(p) for p in maps],
            seed=args.seed,
            strategy=args.strategy,
            replicas=replicas,
            jit_compile=model.jit_compile is True,
        )
        writer.commit()
        return metrics


def _scope(strategy):
    return contextlib.nullcontext() if strategy is None else strategy.scope()


@contextlib.contextmanager
def _writer_folder(folder, strategy):
    """Yields the `RunFolder` this process writes: `folder`, except on the
    non-chief workers of a multi-worker strategy, which train and save
    like the chief into a temporary folder removed afterwards."""
    if strategy is None:
        yield folder
        return
    from keras_attention import distribute

    if distribute.is_chief(strategy):
        yield folder
        return
    temporary = tempfile.mkdtemp(prefix="keras-attention-worker-")
    try:
        yield RunFolder(temporary)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _round(value, digits=2):
    return None if value is None else round(value, digits)


def run(args):
    try:
        metrics = train(args)
    except KeyboardInterrupt:
        output = args.output or os.path.join("runs", f"{args.task}-{args.attention}")
        print(
            "\n[keras-attention] interrupted. The last finished epoch is saved in "
            f"{os.path.join(output, 'backup')}; re-run the same command to resume.",
            file=sys.stderr,
        )
        return INTERRUPTED
    test = ", ".join(f"{k} {v}" for k, v in metrics["test"].items())
    base = ", ".join(f"{k} {v}" for k, v in metrics["baselines"].items())
    print(
        f"[keras-attention] evaluated on the {metrics['test_split']!r} split: {test}"
        + (f" (baselines: {base})" if base else "")
    )
    if not os.path.exists(metrics["model"]):
        # A non-chief worker of --strategy multiworker: its copy is gone.
        print("[keras-attention] trained as a non-chief worker; the chief wrote the run folder")
        return 0
    print(
        f"[keras-attention] wrote {metrics['model']}"
        + (f", {metrics['export']}/" if metrics["export"] else "")
        + f", metrics.json, history.csv and {len(metrics['attention_maps'])} attention map(s)"
        f" in {os.path.dirname(metrics['model'])}"
    )
    return 0
