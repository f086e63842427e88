"""Training helpers: parameter schedules and the end-of-training hard binarization."""

import math

import keras
import numpy as np

from biper_keras.quantizers import BNNPlusPlus, ForwardBackwardQuantizer, check_positive_number

__all__ = ["MuSchedule", "annealed_quantizers", "harden"]

_SCHEDULES = ("linear", "exponential")


def _quantizers_of(layer):
    for attr in ("kernel_quantizer", "input_quantizer"):
        q = getattr(layer, attr, None)
        if q is not None:
            yield q


def annealed_quantizers(model):
    """The quantizers of `model` that hold an annealed parameter mu (each listed once)."""
    found = []
    for layer in model._flatten_layers(include_self=False):
        for q in _quantizers_of(layer):
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
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}.")

    def set_hard(node):
        if isinstance(node, dict):
            if node.get("class_name") == BNNPlusPlus.__name__ and "config" in node:
                node["config"]["hard"] = True
            for v in node.values():
                set_hard(v)
        elif isinstance(node, list):
            for v in node:
                set_hard(v)

    config = keras.saving.serialize_keras_object(model)
    set_hard(config)
    try:
        hardened = keras.saving.deserialize_keras_object(config)
    except Exception as err:
        raise ValueError(
            f"harden: could not rebuild model {model.name!r} from its config ({err}); "
            "subclassed models must set `hard=True` on their BNN++ quantizers themselves."
        ) from err
    # Layer by layer, by name: a quantizer instance shared by several layers is one
    # variable in `model` but one per layer in the rebuilt copy.
    for layer in model.layers:
        hardened.get_layer(layer.name).set_weights([np.array(w) for w in layer.get_weights()])
    return hardened
