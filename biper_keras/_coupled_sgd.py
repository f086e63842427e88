"""SGD with PyTorch's semantics: coupled (L2) weight decay and PyTorch's momentum form.

Keras's `SGD(weight_decay=wd)` decays the weights outside the gradient
(`w -= lr * wd * w`, decoupled) and keeps the velocity in units of the step
(`m = mu * m - lr * g; w += m`). PyTorch's `torch.optim.SGD(weight_decay=wd)` adds
`wd * w` to the gradient before momentum and keeps the velocity in units of the
gradient (`buf = mu * buf + g; w -= lr * buf`). With momentum 0.9 the coupled decay is
about 1 / (1 - 0.9) = 10x stronger at the same `wd`, and under a learning rate that
changes every step the two momentum forms take different steps even without decay.
Every hyper-parameter the BiPer authors published is a PyTorch one, so the recipe
uses this optimizer.
"""

import math
import numbers

import keras
from keras import ops

__all__ = ["CoupledSGD"]


def _check_fraction_or_decay(name, value, upper=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0 \
            or (upper is not None and value > upper):
        bound = f"in [0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(f"Argument `{name}` must be a finite number {bound}. Received: {name}={value!r}.")
    return float(value)


def _constant(value, dtype):
    # Not ops.cast(value, dtype): that goes through a float32 tensor first, and a
    # float64 run would then use 0.8999999762 for momentum 0.9.
    return ops.convert_to_tensor(value, dtype=dtype)


@keras.saving.register_keras_serializable(package="biper_keras")
class CoupledSGD(keras.optimizers.Optimizer):
    r"""`torch.optim.SGD` (dampening 0) as a Keras 3 optimizer, on every backend.

    For each trainable variable w with gradient g, at learning rate lr of this step:

        g   = g + weight_decay * w          (coupled L2 decay, every variable)
        buf = momentum * buf + g            (buf = g at the first step)
        w  -= lr * (g + momentum * buf if nesterov else buf)

    It runs through Keras's own `update_step` path, so it works under
    `tf.distribute` strategies and Keras's `DataParallel` like Keras's SGD.
    Variables named with `exclude_from_weight_decay(...)` get no decay (PyTorch would
    need a separate parameter group for that).

    Args:
        learning_rate: a float, a `LearningRateSchedule` or a callable.
        momentum: in [0, 1].
        nesterov: PyTorch's Nesterov form (above).
        weight_decay: the coupled L2 coefficient (PyTorch's `weight_decay`), >= 0.
        **kwargs: Keras optimizer arguments (clipnorm, global_clipnorm, use_ema, ...);
            not Keras's own decoupled `weight_decay`.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, name="coupled_sgd",
                 **kwargs):
        # Keras's base class would apply its (decoupled) decay if given one: it gets none.
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = _check_fraction_or_decay("momentum", momentum, upper=1)
        if not isinstance(nesterov, bool):
            raise ValueError(f"Argument `nesterov` must be True or False. Received: nesterov={nesterov!r}.")
        if nesterov and self.momentum == 0:
            raise ValueError("Nesterov momentum needs `momentum` > 0. Received: momentum=0.")
        self.nesterov = nesterov
        self.coupled_weight_decay = _check_fraction_or_decay("weight_decay", weight_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum") if self.momentum else []

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay and self._use_weight_decay(variable):
            g = ops.add(g, ops.multiply(_constant(self.coupled_weight_decay, variable.dtype), variable))
        if self.momentum:
            mu = _constant(self.momentum, variable.dtype)
            buf = self.momentums[self._get_variable_index(variable)]
            # buf starts at 0, so the first step gives buf = g, as PyTorch's clone does.
            new_buf = ops.add(ops.multiply(buf, mu), g)
            self.assign(buf, new_buf)
            g = ops.add(g, ops.multiply(new_buf, mu)) if self.nesterov else new_buf
        self.assign_sub(variable, ops.multiply(g, lr))

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.coupled_weight_decay)
        return config
