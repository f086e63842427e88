"""Training: the two-stage BiPer recipe with atomic checkpoints and resume, learning-rate
and mu schedules, and the end-of-training hard binarization of BNN++."""

import contextlib
import dataclasses
import importlib.util
import json
import math
import pathlib
import random
import re
import time
import types

import keras
import numpy as np

from biper_keras import _compat
from biper_keras._files import atomic_write as _atomic_write
from biper_keras.optimizers import CoupledSGD
from biper_keras.quantizers import BNNPlusPlus, ForwardBackwardQuantizer, check_positive_number
from biper_keras.rebuild import rebuild
from biper_keras.recipe import Recipe, Stage, quickstart_recipe  # noqa: F401 (public here too)
from biper_keras.recipe import _check_jit_compile, _check_non_negative

__all__ = ["MuSchedule", "annealed_quantizers", "annealing_callbacks", "harden", "to_binary_stage", "Recipe", "Stage",
           "WarmupCosine", "EpochCheckpoint", "train", "build_model", "make_optimizer", "compile_stage", "resolve_jit_compile",
           "XLA_MIN_SAMPLES", "read_state",
           "load_checkpoint", "make_deterministic", "seeded", "initialize_from", "distribution_scope", "dtype_policy"]

_SCHEDULES = ("linear", "exponential")


def annealed_quantizers(model):
    """The quantizers of `model` that hold an annealed parameter mu (each listed once)."""
    from biper_keras.layers import layer_quantizers, quantized_layers

    found = []
    for layer in quantized_layers(model):
        for q in layer_quantizers(layer).values():
            if isinstance(q, ForwardBackwardQuantizer) and q.mu is not None and not any(q is f for f in found):
                found.append(q)
    return found


class MuSchedule(keras.callbacks.Callback):
    """Anneals mu of every PC++ quantizer in the model from `start` to `end`.

    At the beginning of epoch e (of `epochs`), mu is set to
    `start + (end - start) * t` (linear) or `start * (end / start) ** t` (exponential),
    with t = e / (epochs - 1) (t = 1 after the last epoch of the schedule), and written
    to the epoch logs as `mu` (so CSVLogger / TensorBoard record it).

    Args:
        start, end: finite numbers > 0 with end >= start (mu anneals upward).
        epochs: length of the schedule in epochs (> 0).
        schedule: "linear" or "exponential".
    """

    def __init__(self, start, end, epochs, schedule="linear"):
        super().__init__()
        self.start = check_positive_number("start", start)
        self.end = check_positive_number("end", end)
        if self.end < self.start:
            raise ValueError(
                "A mu schedule anneals upward: `end` must be >= `start`. "
                f"Received: start={start!r}, end={end!r}."
            )
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
            raise ValueError(f"Argument `epochs` must be an integer > 0. Received: epochs={epochs!r}.")
        if schedule not in _SCHEDULES:
            raise ValueError(
                f"Argument `schedule` must be one of {', '.join(_SCHEDULES)}. "
                f"Received: schedule={schedule!r}."
            )
        self.epochs, self.schedule = epochs, schedule
        self.values = []

    def value(self, epoch):
        """mu at the beginning of `epoch` (0-based)."""
        t = 1.0 if self.epochs == 1 else min(epoch / (self.epochs - 1), 1.0)
        if self.schedule == "linear":
            return self.start + (self.end - self.start) * t
        return math.exp(math.log(self.start) + (math.log(self.end) - math.log(self.start)) * t)

    def on_train_begin(self, logs=None):
        self._targets = annealed_quantizers(self.model)
        if not self._targets:
            raise ValueError(
                "MuSchedule: the model has no quantizer with an annealed parameter mu "
                "(e.g. 'bnn_plus' or 'bnn_pp')."
            )

    def on_epoch_begin(self, epoch, logs=None):
        mu = self.value(epoch)
        for q in self._targets:
            q.mu.assign(mu)
        self.values.append(mu)
        self._current = mu

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["mu"] = self._current


def harden(model):
    """A copy of `model` whose BNN++ quantizers binarize with sign (`hard=True`).

    BNN++ trains with the smooth sign-Swish; at the end of training the weights are
    hard-binarized so that the deployed network is exactly binary and converts to LCE's
    binary convolution. The copy has the same weights (mu included); the model must be
    Sequential or functional (rebuilt from its config).
    """

    def set_hard(node):
        if node["class_name"] == BNNPlusPlus.__name__:
            node["config"]["hard"] = True

    return rebuild(model, set_hard)


def to_binary_stage(model, tau=None):
    """Stage 2 of the BiPer recipe from a stage-1 model: a copy (same weights) whose BiPer
    quantizers binarize, `sign(sin(omega * w))` instead of the sine. `tau` sets the weight
    of the sin^2 term on every BiPer-quantized kernel (0: none), as `build_model` gives
    stage 2; None keeps the model's regularizers. Sequential and functional models."""
    from biper_keras.quantizers import BiPer
    from biper_keras.regularizers import SinSquared

    if tau is not None:
        _check_non_negative("tau", tau)

    def edit(node):
        if node["class_name"] == BiPer.__name__:
            node["config"]["binarize"] = True
        quantizer = node["config"].get("kernel_quantizer")
        if tau is not None and isinstance(quantizer, dict) and quantizer.get("class_name") == BiPer.__name__:
            omega = quantizer["config"].get("omega")
            node["config"]["kernel_regularizer"] = (
                keras.saving.serialize_keras_object(SinSquared(tau, omega)) if tau > 0 else None)

    return rebuild(model, edit)


def annealing_callbacks(model, epochs, start=1.0, end=16.0):
    """The callbacks that anneal `model`'s quantizers over `epochs`: an exponential
    `MuSchedule(start, end)` when it has quantizers with an annealed mu (BNN+, BNN++),
    else none."""
    return [MuSchedule(start, end, epochs, "exponential")] if annealed_quantizers(model) else []


# --- the two-stage BiPer recipe ---------------------------------------------------------


@keras.saving.register_keras_serializable(package="biper_keras")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `base` over `warmup_steps`, then cosine decay to 0 at
    `total_steps`. A function of the optimizer's step count, so a resumed run continues
    on the same curve."""

    def __init__(self, base, warmup_steps, total_steps):
        self.base, self.warmup_steps, self.total_steps = float(base), int(warmup_steps), int(total_steps)

    def __call__(self, step):
        from keras import ops

        # In floatx: a float32 schedule is rounded differently in a TF graph than
        # eagerly (one ulp), which a float64 run (the parity test) would see.
        step = ops.cast(step, keras.backend.floatx())
        warm = self.base * (step + 1.0) / max(self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        cosine = 0.5 * self.base * (1.0 + ops.cos(math.pi * ops.clip(progress, 0.0, 1.0)))
        return ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"base": self.base, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights and optimizer state) after every epoch.

    Each epoch writes `checkpoint-<epochs done>.keras` (temporary file + rename), then
    commits it by rewriting `state.json` (same way), then deletes the checkpoints of
    earlier epochs (never one of a later epoch: that would be a guess). A kill at any
    moment leaves a `state.json` naming a complete checkpoint of a complete epoch, never
    a half-written file under a real name."""

    def __init__(self, directory, stage):
        super().__init__()
        self.directory, self.stage = pathlib.Path(directory), stage

    def on_epoch_end(self, epoch, logs=None):
        name = f"checkpoint-{epoch + 1:04d}.keras"
        _atomic_write(self.directory / name, self.model.save)
        state = {"stage": self.stage, "epochs_done": epoch + 1, "checkpoint": name}
        _atomic_write(self.directory / "state.json", lambda p: pathlib.Path(p).write_text(json.dumps(state)))
        for old in self.directory.glob("checkpoint-*.keras"):
            number = _checkpoint_number(old.name)
            if number is not None and number < epoch + 1:
                old.unlink()


def _checkpoint_number(name):
    match = re.fullmatch(r"checkpoint-(\d+)\.keras", name)
    return int(match.group(1)) if match else None


def read_state(directory):
    """The committed state of a stage folder ({"stage", "epochs_done", "checkpoint"}),
    or None before its first complete epoch."""
    path = pathlib.Path(directory) / "state.json"
    if not path.exists():
        return None
    text = path.read_text()
    try:
        state = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): restore it, or move "
                         f"{path.parent} away to restart the stage; the checkpoints are kept.") from None
    done = state.get("epochs_done") if isinstance(state, dict) else None
    if (isinstance(done, bool) or not isinstance(done, int) or done < 1 or not isinstance(state.get("stage"), int)
            or _checkpoint_number(str(state.get("checkpoint"))) != done):
        raise ValueError(
            f"{path} is not a training state (expected stage, epochs_done >= 1 and its checkpoint "
            f"name, found {text.strip()[:60]!r}): restore it, or move {path.parent} away to restart "
            "the stage; the checkpoints are kept.")
    return state


def load_checkpoint(directory):
    """The model of the last complete epoch of a stage folder (with its optimizer)."""
    state = read_state(directory)
    path = pathlib.Path(directory) / state["checkpoint"]
    return _load_saved(path, f"Checkpoint {path}", f"restore it, or move {path.parent} away to restart the stage "
                       "from scratch", missing=f"though {path.parent / 'state.json'} names it as the last complete epoch's")


def _load_saved(path, what, remedy, missing=""):
    """keras.models.load_model(path), or a ValueError that names the file's real problem
    (missing, empty, corrupt: Keras says "File not found" for an empty file) and `remedy`."""
    if not path.exists():
        raise ValueError(f"{what} is missing{', ' + missing if missing else ''}: {remedy}.")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{what} is empty (0 bytes; a disk that filled up, or a copy that failed): {remedy}.")
    try:
        return keras.models.load_model(path)
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{what} could not be loaded, it is corrupt ({first}): {remedy}.") from None


def _load_stage_model(out, stage):
    """A finished stage's `model.keras`, with what to do when it cannot be loaded: without
    it the stage ends again from its last checkpoint, if `state.json` names one."""
    folder = out / f"stage{stage}"
    state = read_state(folder)
    then = (f"stage {stage} then ends again from its checkpoint of epoch {state['epochs_done']}" if state
            else f"stage {stage} is then trained again")
    return _load_saved(folder / "model.keras", f"{folder / 'model.keras'}",
                       f"remove it and resume (CLI: --resume): {then}")


def _first_model(recipe, stage, data):
    """`build_model` for a new run, before anything is written. Images smaller than the
    model's own input size are also run through it once (one image, inference): a
    model that cannot take them (too small for its downsampling) is one ValueError
    naming the image size and where it came from, not an error deep in a layer's call."""
    import inspect

    from biper_keras.models import registry

    h, w, c = data.image_shape
    default = inspect.signature(registry._BUILDERS[recipe.model]).parameters.get("input_shape")
    design = tuple(default.default)[:2] if default is not None and default.default else (224, 224)
    try:
        model = build_model(recipe, stage, data)
        if h < design[0] or w < design[1]:
            model(np.zeros((1, h, w, c), "float32"), training=False)
        return model
    except Exception as err:
        try:  # is it the size? the model's own input size builds
            build_model(recipe, stage, types.SimpleNamespace(image_shape=(*design, c), num_classes=data.num_classes))
        except Exception:
            raise err from None
        source = getattr(data, "size_from", None)
        raise ValueError(
            f"Images of {h}x{w} pixels{f' (the size of {source}, which sets it for all)' if source else ''} are too "
            f"small for model {recipe.model!r} (built for {design[0]}x{design[1]}): {_layer_error(err)}. Use larger "
            "images, or resize them (image_datasets(image_size=...))."
        ) from None


def _layer_error(err):
    """"in <Layer>: <cause>" from Keras's multi-line layer error (without its bold codes)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    layer = re.search(r"calling (\w+)\.call", lines[0]) if lines else None
    causes = [re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:.*$", "", line) for line in lines[1:]
              if not line.startswith(("Arguments received", "•"))]
    cause = causes[0] if causes else (lines[0] if lines else type(err).__name__)
    return f"{layer.group(1) + ' fails: ' if layer else ''}{cause.rstrip('.')}"


def _prepare_resume(folder, epochs_done):
    """Removes temporary files a killed run left, and log rows of epochs after the
    last checkpoint (an epoch interrupted after its row was logged is run again)."""
    for leftover in folder.glob(".*-*"):
        if leftover.is_file():
            leftover.unlink()
    log = folder / "log.csv"
    if log.exists():
        lines = log.read_text().splitlines(keepends=True)
        _atomic_write(log, lambda p: pathlib.Path(p).write_text("".join(lines[: 1 + epochs_done])))


def make_deterministic(seed=0):
    """Makes training repeatable in this process: seeds Python, NumPy and the backend
    (`keras.utils.set_random_seed`) and, on TensorFlow, turns on deterministic kernels
    (`tf.config.experimental.enable_op_determinism()`, process-wide and not undoable).

    Call it before building the data pipelines: tf.data combines its own seeds with
    the global seed in force when a pipeline is built. Then two runs (data + `train`)
    with the same recipe give identical weights. Cost: docs/reliability.md."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def build_model(recipe, stage, data):
    """The model `train()` starts `stage` (1 or 2) of `recipe` from, for `data`'s image
    shape and classes, its weights drawn from `recipe.seed` (the same seed gives the same
    weights; the caller's random generators are left as they were)."""
    from biper_keras.models import get_model
    from biper_keras.quantizers import BiPer
    from biper_keras.regularizers import SinSquared

    settings = recipe.stage1 if stage == 1 else recipe.stage2
    regularizer = None
    if recipe.two_stage:
        quantizer = BiPer(omega=recipe.omega, binarize=stage == 2)
        if settings.tau > 0:
            regularizer = SinSquared(settings.tau)  # omega: the quantizer's
    else:
        quantizer = recipe.kernel_quantizer
    with seeded(recipe.seed):
        model = get_model(recipe.model, input_shape=data.image_shape, num_classes=data.num_classes,
                          kernel_quantizer=quantizer, input_quantizer=recipe.input_quantizer,
                          kernel_regularizer=regularizer, **recipe.model_options)
    if recipe.init_from is not None:
        initialize_from(model, _load_float_model(recipe.init_from), source=recipe.init_from)
    return model


@contextlib.contextmanager
def seeded(seed):
    """Python's and NumPy's global generators seeded with `seed` inside the block, and
    given back their state after it: the caller's random streams continue as if the block
    had not run.

    Keras draws the default seed of every initializer and `SeedGenerator` created
    without one from Python's generator, so a model built inside the block has the same
    weights for the same seed, whatever ran before (the backend's own generators are
    not involved: Keras's initializers run stateless ops on those seeds)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def make_optimizer(recipe, stage, steps_per_epoch):
    """The optimizer `train()` uses for `stage` (1 or 2) of `recipe`: SGD with the
    recipe's momentum and warm-up + cosine schedule over the stage's steps, and its
    weight decay in `recipe.weight_decay_mode` (coupled: `CoupledSGD`, PyTorch's
    semantics; decoupled: `keras.optimizers.SGD(weight_decay=...)`)."""
    if stage not in (1, 2):
        raise ValueError(f"Argument `stage` must be 1 or 2. Received: stage={stage!r}.")
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
        raise ValueError(f"Argument `steps_per_epoch` must be an integer > 0. Received: steps_per_epoch={steps_per_epoch!r}.")
    recipe.validate()
    settings = recipe.stage1 if stage == 1 else recipe.stage2
    total = settings.epochs * steps_per_epoch
    schedule = WarmupCosine(settings.lr, min(recipe.warmup_epochs * steps_per_epoch, total // 2), total)
    momentum = float(recipe.momentum)
    if recipe.weight_decay_mode == "coupled":
        return CoupledSGD(schedule, momentum=momentum, weight_decay=settings.weight_decay)
    return keras.optimizers.SGD(schedule, momentum=momentum, weight_decay=settings.weight_decay or None)


# The least work (training samples: steps x batch) that XLA compiles on TensorFlow/CPU
# under jit_compile="auto": XLA adds ~7 s to the first step of a ResNet-20 and saves
# ~0.1 s on each later step at batch 128 (2 CPU cores; benchmarks/train_step.py), so it
# pays back after ~70 such steps; 200 of them are the threshold.
XLA_MIN_SAMPLES = 200 * 128


def resolve_jit_compile(jit_compile="auto", samples=None):
    """The `jit_compile` to pass to `model.compile` for a run over `samples` training
    samples (steps x batch size; None: unknown). True and False are returned as they
    are. "auto" is Keras's "auto" (XLA on JAX and on TensorFlow with a GPU/TPU, none on
    torch), except on TensorFlow on CPU, where Keras's "auto" never compiles: there it
    is True for a run of at least `XLA_MIN_SAMPLES` samples (the step is faster:
    docs/results.md, "Training step"); False for a shorter or unknown one, with op
    determinism on (`make_deterministic`; Keras's rule) or under a distribution strategy."""
    _check_jit_compile(jit_compile)
    if jit_compile is True or jit_compile is False:
        return jit_compile
    if keras.backend.backend() != "tensorflow":
        return "auto"
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return "auto"
    if _compat.tf_op_determinism_enabled() or tf.distribute.has_strategy():
        return False
    return samples is not None and samples >= XLA_MIN_SAMPLES


def compile_stage(model, recipe, stage, steps_per_epoch):
    """Compiles `model` as `train()` does for `stage` (1 or 2): `make_optimizer`'s SGD,
    cross-entropy on logits, accuracy, the recipe's steps per execution, and XLA as
    `resolve_jit_compile(recipe.jit_compile, <the stage's training samples>)` says."""
    settings = recipe.stage1 if stage == 1 else recipe.stage2
    model.compile(
        make_optimizer(recipe, stage, steps_per_epoch),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=recipe.steps_per_execution,
        jit_compile=resolve_jit_compile(recipe.jit_compile,
                                        settings.epochs * steps_per_epoch * recipe.batch_size),
    )


def _carry_optimizer_state(source, target):
    """Gives `target` (a rebuild of `source`: the same variables in the same order) the
    state of `source`'s optimizer. A freshly compiled optimizer holds one variable until
    it first steps, and loading a file saved with it warns that its 80 or so do not match."""
    target.optimizer.build(target.trainable_variables)
    for new, old in zip(target.optimizer.variables, source.optimizer.variables, strict=True):
        new.assign(old)


def _log_callbacks(folder):
    """CSV log always; TensorBoard where TensorFlow and tensorboard are installed (its
    writer is tf.summary, on every backend): a JAX- or torch-only machine trains without it."""
    logs = [keras.callbacks.CSVLogger(str(folder / "log.csv"), append=True)]
    try:
        has_writer = all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))
    except ImportError:
        has_writer = False
    if has_writer:
        # TensorFlow dispatches callbacks synchronously anyway; elsewhere, epoch logging only.
        board = keras.callbacks.TensorBoard if keras.backend.backend() == "tensorflow" else _EpochTensorBoard
        logs.append(board(str(folder / "tensorboard")))
    return logs


class _EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard without its batch-end hook (the one-time graph write and
    per-batch scalars, which update_freq="epoch" does not keep): any callback with a
    batch-end hook makes Keras give up asynchronous callback dispatch (JAX, torch) and
    wait on the host for every step's logs."""

    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(self, log_dir):
        super().__init__(log_dir, write_graph=False)


def distribution_scope(name):
    """A function returning a (new) context in which to build, compile and train for
    multi-device training; leaving the context restores what was in force before it.

    TensorFlow backend: "mirrored" (all local devices), "multi-worker" (hosts listed in
    the TF_CONFIG environment variable, one process per host), "tpu". JAX backend:
    "data-parallel" (Keras's DataParallel over all local devices). None: one device.
    """
    if name is None:
        return contextlib.nullcontext
    backend = keras.backend.backend()
    if backend == "tensorflow" and name in ("mirrored", "multi-worker", "tpu"):
        import tensorflow as tf

        if name == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        elif name == "multi-worker":
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            strategy = tf.distribute.TPUStrategy(resolver)
        return strategy.scope
    if backend == "jax" and name == "data-parallel":
        return keras.distribution.DataParallel().scope  # sets the distribution, restores the previous one
    raise ValueError(
        f"Distribution {name!r} is not available on the {backend} backend: use mirrored, "
        "multi-worker or tpu with TensorFlow, data-parallel with JAX."
    )


def train(recipe, data, out_dir, *, stages=None, resume=False, verbose=1, callbacks=(), distribute=None):
    """Runs the recipe on `data` (a `biper_keras.data.Datasets`), writing to `out_dir`:

        run.json                                   the recipe and the data's classes
        stage{n}/checkpoint-<n>.keras, state.json  after every epoch (state.json commits it)
        stage{n}/log.csv, stage{n}/tensorboard/    logs
        stage{n}/fit.json, stage{n}/model.keras    the stage's training time and final model
        summary.json                               accuracy, epochs, time, images/s

    With `resume=True` a stage continues from its last complete epoch (weights and
    optimizer state), and a finished stage is not run again (a stage whose final test
    evaluation was interrupted is evaluated). Resuming refuses a folder that holds files
    but is not a run, and a run of another recipe or other classes. `distribute` names a
    multi-device setting (see `distribution_scope`); `recipe.batch_size` is then the
    global batch. For repeatable runs call `make_deterministic(recipe.seed)` before
    building `data`. `recipe.precision` sets Keras's dtype policy for the run
    (restored afterwards): under a mixed policy the latent weights stay float32 and every
    binary kernel is computed from them in float32. Returns the summary dict.
    """
    recipe.validate()
    if recipe.init_from is not None and not resume:  # a wrong float model fails before the folder is made
        with dtype_policy(recipe.precision):
            build_model(recipe, 1 if recipe.two_stage else 2, data)
    with dtype_policy(recipe.precision):
        return _train(recipe, data, out_dir, stages=stages, resume=resume, verbose=verbose, callbacks=callbacks,
                      distribute=distribute)


@contextlib.contextmanager
def dtype_policy(name):
    """Keras's global dtype policy set to `name` ("float32", "mixed_bfloat16",
    "mixed_float16") inside the block and restored after it: the layers built inside take
    it, and `compile` adds loss scaling under mixed_float16."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _train(recipe, data, out_dir, *, stages, resume, verbose, callbacks, distribute):
    from biper_keras import progress

    if not getattr(data, "train_size", 0) or not getattr(data, "test_size", 0):
        raise ValueError(f"Argument `data` has no training or no test images: {data!r}.")
    scope = distribution_scope(distribute)
    out = pathlib.Path(out_dir)
    stages = stages or ((1, 2) if recipe.two_stage else (2,))
    first = None
    if not out.exists() or not any(out.iterdir()):  # a new run: its model must build before anything is written
        with scope():
            first = _first_model(recipe, stages[0], data)
    summary = _open_run(recipe, data, out, resume)
    steps_per_epoch = max(1, math.ceil(data.train_size / recipe.batch_size))
    planned = [(s, (recipe.stage1 if s == 1 else recipe.stage2).epochs) for s in stages]
    complete = all("test_accuracy" in summary.get(f"stage{s}", {}) and (out / f"stage{s}" / "model.keras").exists()
                   for s in stages)
    if verbose:
        print(f"{out}: the run is complete ({progress.stages_text(planned)}); nothing to train" if complete else
              progress.plan_text(planned, steps_per_epoch, recipe.batch_size, data.train_size))
    previous = None
    with scope():  # building, compiling and fitting alike (JAX's data-parallel shards the batches in fit)
        for stage in stages:
            run = _StageRun(recipe, data, out, stage, steps_per_epoch, summary)
            if resume and run.final.exists():  # trained before: evaluated, if that was interrupted
                previous = _load_stage_model(out, stage)
                if "test_accuracy" not in summary.get(f"stage{stage}", {}):
                    run.commit(previous, _read_fit(run.folder) or {"epochs": run.settings.epochs})
                continue
            state = run.resume_state() if resume else None
            model, initial_epoch = run.start(state, previous, built=first)
            first = None
            model, fit = run.fit(model, initial_epoch, planned, verbose, callbacks)
            run.commit(model, fit)
            previous = model
    return summary


def _read_fit(folder):
    """A stage's recorded training time and accuracy (fit.json), or None."""
    from biper_keras import run_folder

    return run_folder.read_json(folder / "fit.json")


def _open_run(recipe, data, out, resume):
    """Checks that `out` may take (resume=False) or continue (resume=True) this run,
    writes its run.json, and returns the summary recorded so far."""
    from biper_keras import run_folder

    identity = run_folder.identity(recipe, data)
    if not resume and out.exists() and any(out.iterdir()):
        raise ValueError(f"Output folder {out} is not empty: pass resume=True (CLI: --resume) or another folder.")
    if resume:
        run_folder.check_resumable(out, identity)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / run_folder.RUN_FILE).exists():
        _atomic_write(out / run_folder.RUN_FILE, lambda p: pathlib.Path(p).write_text(json.dumps(identity, indent=2)))
    return (run_folder.read_json(out / "summary.json") if resume else None) or {}


class _StageRun:
    """One stage of `train()`: its folder, where it resumes from, its fit, and the commit
    that marks it done."""

    def __init__(self, recipe, data, out, stage, steps_per_epoch, summary):
        self.recipe, self.data, self.out, self.stage = recipe, data, out, stage
        self.settings = recipe.stage1 if stage == 1 else recipe.stage2
        self.steps_per_epoch, self.summary = steps_per_epoch, summary
        self.folder = out / f"stage{stage}"
        self.folder.mkdir(exist_ok=True)
        self.final = self.folder / "model.keras"

    def resume_state(self):
        """The committed state to continue from (None: from the start), after removing
        what a killed run left behind."""
        state = read_state(self.folder)
        if state:
            if state["stage"] != self.stage or state["epochs_done"] > self.settings.epochs:
                raise ValueError(f"{self.folder / 'state.json'} records {state['epochs_done']} epochs of stage "
                                 f"{state['stage']}, but stage {self.stage} has {self.settings.epochs}.")
        elif any(self.folder.glob("checkpoint-*.keras")):
            raise ValueError(f"{self.folder} has checkpoints but no state.json naming the committed one: "
                             f"restore it, or move {self.folder} away to restart the stage.")
        _prepare_resume(self.folder, state["epochs_done"] if state else 0)
        return state

    def start(self, state, previous, built=None):
        """The compiled model to fit and its first epoch: the checkpoint of `state`, stage
        2 from stage 1's model (`previous`, or the one saved in the run), `built` (a new
        run's first model, built before anything was written), or a new model."""
        recipe, stage = self.recipe, self.stage
        if state:
            return load_checkpoint(self.folder), state["epochs_done"]
        stage1_file = self.out / "stage1" / "model.keras"
        if stage == 2 and recipe.two_stage and previous is None and stage1_file.exists():
            previous = _load_stage_model(self.out, 1)
        if built is not None:
            model = built
        elif stage == 2 and recipe.two_stage and previous is not None:
            with seeded(recipe.seed):  # as build_model does
                model = to_binary_stage(previous, tau=recipe.stage2.tau)  # stage 2 starts from stage 1
        else:
            model = build_model(recipe, stage, self.data)
        compile_stage(model, recipe, stage, self.steps_per_epoch)
        return model, 0

    def fit(self, model, initial_epoch, planned, verbose, callbacks):
        """Fits `model` to the end of the stage (checkpointing every epoch); returns the
        model to save (BNN++ hardened) and the stage's fit record."""
        from biper_keras import progress

        recipe, stage, settings, data = self.recipe, self.stage, self.settings, self.data
        annealing = annealing_callbacks(model, settings.epochs, recipe.mu_start, recipe.mu_end)
        epochs_run = settings.epochs - initial_epoch
        start = time.perf_counter()
        history = {}
        if epochs_run:  # 0 when a kill came after the last checkpoint
            history = model.fit(
                data.train, validation_data=data.test, epochs=settings.epochs, initial_epoch=initial_epoch,
                shuffle=False,  # the pipeline shuffles
                verbose=verbose,
                callbacks=[*callbacks, *annealing, *_log_callbacks(self.folder), EpochCheckpoint(self.folder, stage),
                           *([progress.Eta(stage, settings.epochs, sum(n for s, n in planned if s > stage))]
                             if verbose else [])],
            ).history
        seconds = time.perf_counter() - start
        if any(isinstance(q, BNNPlusPlus) for q in annealed_quantizers(model)):
            # BNN++ ends hard-binarized: the saved model is the deployable one.
            hardened = harden(model)
            compile_stage(hardened, recipe, stage, self.steps_per_epoch)
            _carry_optimizer_state(model, hardened)
            model = hardened
        fit = {"epochs": settings.epochs, "seconds": seconds,
               "images_per_second": data.train_size * epochs_run / seconds if epochs_run and seconds else None,
               "train_accuracy": float(history["accuracy"][-1]) if history.get("accuracy") else None}
        if not epochs_run:
            fit = _read_fit(self.folder) or fit
        _atomic_write(self.folder / "fit.json", lambda p: pathlib.Path(p).write_text(json.dumps(fit)))
        _atomic_write(self.final, model.save)
        return model, fit

    def commit(self, model, fit):
        """Evaluates the stage's model and records it in summary.json. summary.json, not
        model.keras, marks a stage done: a run stopped during this evaluation is
        evaluated on resume."""
        test_loss, test_acc = model.evaluate(self.data.test, verbose=0)[:2]
        self.summary[f"stage{self.stage}"] = {"test_accuracy": float(test_acc), "test_loss": float(test_loss), **fit}
        self.summary["recipe"] = dataclasses.asdict(self.recipe)
        _atomic_write(self.out / "summary.json",
                      lambda p: pathlib.Path(p).write_text(json.dumps(self.summary, indent=2)))


# --- the fine-tuning route: a binary model initialized from a trained float one -----------


def initialize_from(model, float_model, *, source=None):
    """Gives `model` (a binary model) the weights of `float_model`, its float twin, and
    returns it: the first step of the fine-tuning route (`Recipe.init_from`).

    The layers are paired by name (nested layers, e.g. the projections of an attention
    layer, through their parent). Every float weight becomes the matching latent weight;
    each kernel scale alpha starts at the mean |w| of its output channel (the last kernel
    axes, alpha's shape), so that the binarized layer starts at the float layer's scale,
    as `binarize()` does; the quantizers' own variables (mu) keep their values.

    Raises ValueError naming both models when the architectures differ (a layer missing
    on one side, other weights or shapes) or `float_model` has quantized layers.
    `source` names where `float_model` came from (a path) in that message.
    """
    import numpy as np

    from biper_keras import _compat
    from biper_keras.layers import quantized_layers
    from biper_keras.layers.base import _QuantizedLayer
    from biper_keras.quantizers import Quantizer

    if not isinstance(model, keras.Model) or not isinstance(float_model, keras.Model):
        raise TypeError("`model` and `float_model` must be Keras models. Received: "
                        f"{type(model).__name__} and {type(float_model).__name__}.")
    where = f" ({source})" if source else ""

    def mismatch(detail):
        return ValueError(f"The float model {float_model.name!r}{where} does not match the model {model.name!r} "
                          f"it should initialize: {detail}. Train the float model with the same model and "
                          "options, and no quantizers.")

    quantized = quantized_layers(float_model)
    if quantized:
        raise ValueError(f"The model {float_model.name!r}{where} is not a float model: {quantized[0].name!r} "
                         "is quantized. Initialize from the float model (trained with no quantizers).")
    with_weights = lambda m: {layer.name: layer for layer in m.layers if layer.weights}  # noqa: E731
    binary_layers, float_layers = with_weights(model), with_weights(float_model)
    only = sorted(binary_layers.keys() - float_layers.keys()), sorted(float_layers.keys() - binary_layers.keys())
    if only[0] or only[1]:
        raise mismatch("; ".join(f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''} only in {m.name!r}"
                                 for names, m in zip(only, (model, float_model)) if names))
    assignments, scales = [], []
    for name, layer in binary_layers.items():
        extra, pairs = set(), []  # quantization variables; (alpha, its latent kernel)
        for sub in _compat.flatten_layers(layer, include_self=True):
            if isinstance(sub, Quantizer):
                extra.update(id(v) for v in sub.weights)
            elif isinstance(sub, _QuantizedLayer) and getattr(sub, "alpha", None) is not None:
                extra.add(id(sub.alpha))
                pairs.append((sub.alpha, sub.latent_kernel))
        latent = [v for v in layer.weights if id(v) not in extra]
        source_weights = float_layers[name].weights
        shapes = [tuple(v.shape) for v in latent], [tuple(v.shape) for v in source_weights]
        if shapes[0] != shapes[1]:
            raise mismatch(f"layer {name!r} has weights of shapes {shapes[0]} in {model.name!r} and "
                           f"{shapes[1]} in {float_model.name!r}")
        assignments += zip(latent, source_weights)
        scales += pairs
    for variable, value in assignments:
        variable.assign(keras.ops.convert_to_numpy(value))
    for alpha, kernel in scales:
        kernel = np.abs(keras.ops.convert_to_numpy(kernel))
        axes = tuple(range(kernel.ndim - len(alpha.shape)))
        if kernel.shape[kernel.ndim - len(alpha.shape):] != tuple(alpha.shape):
            raise ValueError(f"A kernel scale of shape {tuple(alpha.shape)} is not per output unit of its kernel "
                             f"{kernel.shape}: cannot start it at the mean |w|.")
        alpha.assign(np.mean(kernel, axis=axes))
    return model


def _load_float_model(path):
    """The float model a fine-tuning run starts from, or a ValueError naming the path."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"init_from: no such file: {path} (the float model to fine-tune from, e.g. "
                         "float_run/stage2/model.keras).")
    try:
        return keras.models.load_model(path)
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"init_from: {path} could not be loaded as a Keras model ({first}).") from None
