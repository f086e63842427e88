"""The training recipe as data: `Recipe` (the authors' CIFAR-10 recipe by default, two
stages of `Stage` settings), its validation, and the short-run presets. No training code
here: `biper_keras.training` runs a recipe (and keeps these names public)."""

import dataclasses
import math

from biper_keras.quantizers import DEFAULT_OMEGA, check_positive_number
from biper_keras.quantizers.core import check_omega

__all__ = ["Recipe", "Stage", "quickstart_recipe"]

_WEIGHT_DECAY_MODES = ("coupled", "decoupled")
_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass
class Stage:
    """One training stage of a `Recipe`: epochs, peak learning rate, weight decay (in
    the recipe's `weight_decay_mode`) and tau, the weight of the sin^2 regularizer."""

    epochs: int
    lr: float
    weight_decay: float  # PyTorch's meaning with weight_decay_mode="coupled" (see Recipe)
    tau: float  # weight of the sin^2 regularizer (BiPer only; 0 disables it)


@dataclasses.dataclass
class Recipe:
    """The authors' CIFAR-10 recipe by default (SGD, warm-up then cosine, sin^2 term).

    With `kernel_quantizer="biper"`, stage 1 trains sine weights (`binarize=False`) and
    stage 2 binarized ones, starting from stage 1's weights. Any other registered
    quantizer name trains one stage (stage 2's settings) with that weight binarizer.

    `weight_decay_mode="coupled"` (default) is PyTorch's `SGD(weight_decay=wd)`, the
    meaning of the authors' values: `wd * w` joins the gradient of every trainable
    variable before momentum (`CoupledSGD`). `"decoupled"` is Keras's
    `SGD(weight_decay=wd)` (`w -= lr * wd * w` outside momentum), about 10x weaker at
    momentum 0.9 for the same number. `model_options` go to the model builder (e.g.
    `{"head_batch_norm": False}`; see `biper_keras.models.resnet.resnet20`).

    `init_from` is the fine-tuning route (train the float model, then binarize and
    fine-tune it): the path of a trained float `.keras` model of the same architecture
    (the recipe's model built with `kernel_quantizer=None, input_quantizer=None`, e.g. a
    run of `Recipe(kernel_quantizer=None, input_quantizer=None)`). The first stage then
    starts from its weights instead of a random initialization: they become the latent
    weights, and each kernel scale alpha starts at the mean |w| of its output channel, as
    `binarize()` does (see `training.initialize_from`). None: end-to-end training.
    """

    model: str = "resnet20"
    kernel_quantizer: str = "biper"
    input_quantizer: str = "approx_sign"
    omega: float = DEFAULT_OMEGA
    stage1: Stage = dataclasses.field(default_factory=lambda: Stage(600, 0.021, 0.0016, 0.037))
    stage2: Stage = dataclasses.field(default_factory=lambda: Stage(300, 0.0037, 0.00016, 0.0468))
    batch_size: int = 256
    momentum: float = 0.9
    warmup_epochs: int = 5
    seed: int = 0
    # Quantizers with an annealed mu (BNN+, BNN++): exponential from mu_start to mu_end.
    mu_start: float = 1.0
    mu_end: float = 16.0
    weight_decay_mode: str = "coupled"
    # Keras's dtype policy for the run: "float32", "mixed_bfloat16" (GPUs/TPUs; slower than
    # float32 on this CPU) or "mixed_float16" (with Keras's loss scaling).
    precision: str = "float32"
    # Training steps per compiled call (Keras's `compile(steps_per_execution=)`): fewer
    # host round trips on an accelerator; callbacks then see every n-th batch. Same math.
    steps_per_execution: int = 1
    # XLA for the training step (Keras's `compile(jit_compile=)`): True, False or "auto".
    # "auto" is Keras's choice (XLA on JAX and on TensorFlow accelerators, none on torch),
    # except on TensorFlow on CPU, where Keras never compiles: there a stage of at least
    # `training.XLA_MIN_SAMPLES` samples (steps x batch) is compiled by XLA
    # (`training.resolve_jit_compile`).
    jit_compile: object = "auto"
    model_options: dict = dataclasses.field(default_factory=dict)
    init_from: str = None  # path of a trained float .keras model: fine-tune from it

    def validate(self):
        from biper_keras.models import available_models
        from biper_keras.quantizers import get

        if self.model not in available_models():
            raise ValueError(f"Unknown model {self.model!r}. Known models: {', '.join(available_models())}.")
        get(self.kernel_quantizer)  # raises for unknown names
        get(self.input_quantizer)
        for name, stage in (("stage1", self.stage1), ("stage2", self.stage2)):
            if isinstance(stage.epochs, bool) or not isinstance(stage.epochs, int) or stage.epochs <= 0:
                raise ValueError(f"{name} epochs must be an integer > 0. Received: {stage.epochs!r}.")
            check_positive_number(f"{name} lr", stage.lr)
            _check_non_negative(f"{name} weight_decay", stage.weight_decay)
            _check_non_negative(f"{name} tau", stage.tau)
        check_positive_number("omega", self.omega)
        if self.omega > _FLOAT32_MAX:  # inf in the float32 kernels: sin(inf * w) is NaN
            raise ValueError(f"Argument `omega` must be representable in float32 (< 3.4e38). Received: omega={self.omega!r}.")
        check_omega(self.omega)
        for name in ("warmup_epochs", "seed", "batch_size", "steps_per_execution"):
            value = getattr(self, name)
            positive = name in ("batch_size", "steps_per_execution")
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
                bound = "> 0" if positive else ">= 0"
                raise ValueError(f"Argument `{name}` must be an integer {bound}. Received: {name}={value!r}.")
        _check_jit_compile(self.jit_compile)
        if self.precision not in _PRECISIONS:
            raise ValueError(f"Argument `precision` must be one of {', '.join(_PRECISIONS)}. "
                             f"Received: precision={self.precision!r}.")
        if self.weight_decay_mode not in _WEIGHT_DECAY_MODES:
            raise ValueError(f"Argument `weight_decay_mode` must be one of {', '.join(_WEIGHT_DECAY_MODES)}. "
                             f"Received: weight_decay_mode={self.weight_decay_mode!r}.")
        if not isinstance(self.model_options, dict):
            raise ValueError(f"Argument `model_options` must be a dict of model-builder arguments. "
                             f"Received: model_options={self.model_options!r}.")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise ValueError("Argument `init_from` must be None or the path (a str) of a trained float .keras "
                             f"model. Received: init_from={self.init_from!r}.")
        return self

    @property
    def two_stage(self):
        return self.kernel_quantizer == "biper"

    @classmethod
    def trial(cls, epochs=(12, 8), **changes):
        """The paper's recipe cut to `epochs` (stage 1, stage 2): a short run that
        visibly learns. Every hyper-parameter is the paper's (rates, weight decay, tau;
        the 5 warm-up epochs are capped at half a stage, as in any run). Measured on the
        quickstart's 500 images (benchmarks/quickstart_schedules.py): in a short budget
        what learns is more optimizer steps (3+3 epochs at batch 50: 12-15 % top-1;
        12+8 at batch 25: 25 %), while other rates or a one-epoch warm-up made no
        difference beyond the seed-to-seed spread. `changes` are any other Recipe
        fields (e.g. batch_size: keep tens of steps per epoch on small data)."""
        paper = cls()
        e1, e2 = epochs
        return dataclasses.replace(paper, stage1=dataclasses.replace(paper.stage1, epochs=e1),
                                   stage2=dataclasses.replace(paper.stage2, epochs=e2), **changes)


def quickstart_recipe(epochs=(12, 8)):
    """What `biper-keras quickstart` trains on the package's 500 sample images: the
    paper's recipe for `epochs` at batch 25 (20 steps an epoch; see `Recipe.trial`)."""
    return Recipe.trial(tuple(epochs), batch_size=25)


_FLOAT32_MAX = 3.4028234663852886e38


def _check_jit_compile(value):
    """Raises a ValueError unless `value` is True, False or "auto"."""
    if not (value is True or value is False or value == "auto"):
        raise ValueError(f"Argument `jit_compile` must be True, False or 'auto'. Received: jit_compile={value!r}.")


def _check_non_negative(name, value):
    """A finite number >= 0 (NaN would silently turn a loss term or the decay off)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"Argument `{name}` must be a finite number >= 0. Received: {name}={value!r}.")
    return float(value)
