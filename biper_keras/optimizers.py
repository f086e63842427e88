"""Optimizers: Larq's `Bop` and `CaseOptimizer` (`larq.optimizers`), and `CoupledSGD`,
PyTorch's SGD semantics, which the training recipe uses (see biper_keras/_coupled_sgd.py).

Bop (Helwegen et al., NeurIPS 2019, "Latent weights do not exist") trains binary
weights without latent real values: it keeps an exponential moving average m of each
weight's gradient and flips the weight when the average pushes against it hard enough,

    m <- m + gamma (g - m),      w <- -w  where  w * m > threshold,  else w,

written as Larq does, `w <- sign(-sign(w m - threshold) w)` with sign(0) = +1. Weights
trained by Bop are +-1 after the first step; mark them with `NoOp(precision=1)` (or any
1-bit quantizer) so that `Bop.is_binary_variable` picks them, and route the rest to an
ordinary optimizer with `CaseOptimizer`.

Both are written with `keras.ops` and Keras's optimizer API; tested in `model.fit` on the
TensorFlow and torch backends, and on JAX (stateless steps: `CaseOptimizer` exposes the
variables of the optimizers it wraps).
"""

import numbers

import keras
from keras import ops

from biper_keras._coupled_sgd import CoupledSGD  # its public home

__all__ = ["Bop", "CaseOptimizer", "CoupledSGD"]


def _check_number(name, value, minimum_exclusive=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Argument `{name}` must be a number. Received: {name}={value!r}.")
    if minimum_exclusive is not None and not value > minimum_exclusive:
        raise ValueError(f"Argument `{name}` must be > {minimum_exclusive}. Received: {name}={value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="biper_keras")
class Bop(keras.optimizers.Optimizer):
    """Binary optimizer: flips a binary weight when the moving average of its gradient
    exceeds `threshold` in the direction that shrinks it.

    Args:
        threshold: magnitude of average gradient signal needed to flip a weight
            (Larq's default 1e-8).
        gamma: adaptivity rate of the moving average, in (0, 1] (Larq's default 1e-4).
        name: optimizer name.
    """

    def __init__(self, threshold=1e-8, gamma=1e-4, name="Bop", **kwargs):
        # Keras optimizers require a learning rate; Bop has none (gamma plays its part).
        kwargs.pop("learning_rate", None)
        super().__init__(learning_rate=1.0, name=name, **kwargs)
        self.threshold = _check_number("threshold", threshold)
        self.gamma = _check_number("gamma", gamma, minimum_exclusive=0.0)
        if self.gamma > 1.0:
            raise ValueError(f"Argument `gamma` must be in (0, 1]. Received: gamma={gamma!r}.")

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m = [self.add_variable_from_reference(v, "m") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        m = self._m[self._get_variable_index(variable)]
        gradient = ops.cast(gradient, variable.dtype)
        m_t = m + self.gamma * (gradient - m)
        self.assign(m, m_t)
        flipped = -ops.sign(variable * m_t - self.threshold) * variable
        self.assign(variable, ops.sign(ops.sign(flipped) + 0.1))

    def get_config(self):
        config = super().get_config()
        for key in ("learning_rate",):
            config.pop(key, None)
        return {**config, "threshold": self.threshold, "gamma": self.gamma}

    @staticmethod
    def is_binary_variable(variable):
        """True for variables that quantized layers marked as 1-bit (`precision == 1`):
        the kernels of layers whose kernel quantizer has `precision = 1`."""
        return getattr(variable, "precision", 32) == 1


# Options of Keras's optimizer base that a case optimizer cannot honour (it does no
# update of its own): they belong to the optimizers it wraps.
_WRAPPED_ONLY = ("weight_decay", "use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
                 "gradient_accumulation_steps")


@keras.saving.register_keras_serializable(package="biper_keras")
class CaseOptimizer(keras.optimizers.Optimizer):
    """Applies different optimizers to different variables (Larq's `CaseOptimizer`).

    Each variable is trained by the optimizer whose predicate accepts it (at most one
    may), else by `default_optimizer`; with no default, an unclaimed variable is not
    trained (a warning says so).

        CaseOptimizer((Bop.is_binary_variable, Bop()), default_optimizer=keras.optimizers.Adam(0.01))

    Gradient clipping: each wrapped optimizer clips its own gradients by its own
    `clipnorm`/`clipvalue`/`global_clipnorm`, as in Larq. Given to the case optimizer,
    the same options clip every gradient before it is routed (`global_clipnorm`: over
    all the variables it trains), then the wrapped optimizer's own clipping applies.
    The other options of Keras's optimizer base (weight decay, EMA, loss scaling,
    gradient accumulation) belong to the wrapped optimizers and are refused here.

    Serialization: like Larq, the config records which optimizer trains each variable
    once the optimizer is built (`var_opt_mapping`: (variable path, optimizer index)
    in the order of the variables it was built with, the model's trainable variables),
    in place of the predicates (Python functions). So `keras.models.load_model`
    restores a model compiled with it, with the wrapped optimizers' state. A config
    saved before the first step has no such record: the loaded optimizer then refuses
    to step, asking for a new one.

    Args:
        *predicate_optimizer_pairs: `(predicate, optimizer)` pairs; `predicate(variable)`
            returns True when `optimizer` should train `variable`.
        default_optimizer: the optimizer for the other variables, or None.
        name: optimizer name.
        **kwargs: `clipnorm`, `clipvalue` or `global_clipnorm` (at most one).
    """

    def __init__(self, *predicate_optimizer_pairs, default_optimizer=None, name="optimizer_case", **kwargs):
        kwargs.pop("learning_rate", None)
        for option in _WRAPPED_ONLY:
            if kwargs.get(option) not in (None, False):
                raise ValueError(f"Argument `{option}` belongs to the optimizers a CaseOptimizer wraps (it does "
                                 f"no update of its own): give it to them. Received: {option}={kwargs[option]!r}.")
            kwargs.pop(option, None)
        super().__init__(learning_rate=0.0, name=name, **kwargs)
        for i, pair in enumerate(predicate_optimizer_pairs):
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(f"`predicate_optimizer_pairs[{i}]` must be a (predicate, optimizer) tuple. Received: {pair!r}.")
            predicate, optimizer = pair
            if not callable(predicate):
                raise TypeError(f"Expected a callable predicate at `predicate_optimizer_pairs[{i}][0]`. Received: {predicate!r}.")
            if not isinstance(optimizer, keras.optimizers.Optimizer):
                raise TypeError(f"Expected a Keras optimizer at `predicate_optimizer_pairs[{i}][1]`. Received: {optimizer!r}.")
        if default_optimizer is not None and not isinstance(default_optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"Expected a Keras optimizer for `default_optimizer`. Received: {default_optimizer!r}.")
        self.pred_opt_pairs = list(predicate_optimizer_pairs)
        self.default = default_optimizer
        self.optimizers = [opt for _, opt in self.pred_opt_pairs] + ([default_optimizer] if default_optimizer else [])
        self._groups = None
        self.var_opt_mapping = None  # ((variable path, index in self.optimizers or None), ...) once built
        self._recorded = None  # a restored optimizer's var_opt_mapping: what build follows
        self._restored_without_mapping = False

    def _assign(self, var_list):
        """Index of the optimizer training each variable (None: untrained)."""
        assignment = []
        for variable in var_list:
            claims = [i for i, (predicate, _) in enumerate(self.pred_opt_pairs) if predicate(variable)]
            if len(claims) > 1:
                raise ValueError(f"Variable {variable.path!r} is claimed by more than one optimizer ({claims}).")
            if claims:
                assignment.append(claims[0])
            elif self.default is not None:
                assignment.append(len(self.pred_opt_pairs))
            else:
                import warnings

                warnings.warn(f"No `default_optimizer` to train variable {variable.path!r}: it stays as it is.",
                              stacklevel=3)
                assignment.append(None)
        for i, (_, optimizer) in enumerate(self.pred_opt_pairs):
            if i not in assignment:
                raise ValueError(f"Optimizer {optimizer.name!r} did not claim any variables.")
        return assignment

    def _follow_record(self, var_list):
        """The recorded assignment, by position (variable paths change with the name of
        the model that loads them; their order is what Keras restores state by)."""
        if len(var_list) != len(self._recorded):
            raise ValueError(f"CaseOptimizer {self.name!r} was saved for {len(self._recorded)} variables "
                             f"({', '.join(path for path, _ in self._recorded[:3])}, ...) but is built for "
                             f"{len(var_list)}: compile the model with a new CaseOptimizer.")
        return [None if index is None else int(index) for _, index in self._recorded]

    def build(self, var_list):
        if self.built:
            return
        if self._restored_without_mapping:
            super().build(var_list)  # a loaded model still loads; apply() says what to do
            return
        assignment = self._assign(var_list) if self._recorded is None else self._follow_record(var_list)
        self.var_opt_mapping = tuple((variable.path, index) for variable, index in zip(var_list, assignment))
        self._groups = [[j for j, a in enumerate(assignment) if a == i] for i in range(len(self.optimizers))]
        for optimizer, indices in zip(self.optimizers, self._groups):
            optimizer.build([var_list[j] for j in indices])
        super().build(var_list)

    @property
    def variables(self):
        # Own variables first, then each wrapped optimizer's: JAX's stateless step maps
        # every variable listed here.
        return self._variables[:] + [v for opt in self.optimizers for v in opt.variables]

    def _clip(self, grads):
        """The case optimizer's own clipping (Keras's semantics for each option)."""
        if self.clipnorm:
            return [g if g is None else g * (self.clipnorm / ops.maximum(ops.sqrt(ops.sum(ops.square(g))),
                                                                         self.clipnorm))
                    for g in grads]
        if self.global_clipnorm:
            norm = ops.sqrt(sum(ops.sum(ops.square(g)) for g in grads if g is not None))
            scale = self.global_clipnorm / ops.maximum(norm, self.global_clipnorm)
            return [g if g is None else g * ops.cast(scale, g.dtype) for g in grads]
        if self.clipvalue:
            return [g if g is None else ops.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def apply(self, grads, trainable_variables=None):
        if self._restored_without_mapping:
            raise ValueError(
                f"CaseOptimizer {self.name!r} was saved before its first step, so its config does not say "
                "which variables each optimizer trains (its predicates are Python functions): compile the "
                "loaded model with a new CaseOptimizer.")
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        grads = self._clip(list(grads))
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        for optimizer, indices in zip(self.optimizers, self._groups):
            if indices:
                optimizer.apply([grads[j] for j in indices], [trainable_variables[j] for j in indices])
        self.iterations.assign_add(1)

    def get_config(self):
        config = super().get_config()
        config.pop("learning_rate", None)
        for option in _WRAPPED_ONLY:
            config.pop(option, None)
        return {
            **config,
            "optimizers": [keras.optimizers.serialize(opt) for _, opt in self.pred_opt_pairs],
            "default_optimizer": None if self.default is None else keras.optimizers.serialize(self.default),
            "var_opt_mapping": self.var_opt_mapping,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """The optimizer of `get_config`, its predicates replaced by the recorded
        variable-to-optimizer mapping."""
        config = dict(config)
        mapping = config.pop("var_opt_mapping", None)
        optimizers = [keras.optimizers.deserialize(c, custom_objects=custom_objects) for c in config.pop("optimizers")]
        default = config.pop("default_optimizer", None)
        if default is not None:
            default = keras.optimizers.deserialize(default, custom_objects=custom_objects)
        case = cls(*[(_unknown_predicate, opt) for opt in optimizers], default_optimizer=default, **config)
        case._recorded = None if mapping is None else tuple((path, index) for path, index in mapping)
        case._restored_without_mapping = mapping is None
        return case


def _unknown_predicate(variable):
    """Stands for a restored `CaseOptimizer`'s predicates, which its config replaces by
    the recorded assignment."""
    return False
