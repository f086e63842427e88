"""Weight constraints for binary networks (Larq's `larq.constraints`), for Keras 3.

`WeightClip` keeps latent weights in [-clip_value, clip_value], so that a clipped
straight-through estimator (`ste_sign`, gradient 0 beyond |w| > 1) cannot starve them.
Importing `biper_keras` makes the name `"weight_clip"` (and `"WeightClip"`) resolve
wherever Keras looks a constraint up by name, e.g.
`keras.layers.Dense(8, kernel_constraint="weight_clip")`.
"""

import numbers

import keras
from keras import ops

from biper_keras import _compat

__all__ = ["WeightClip", "weight_clip", "get"]


@keras.saving.register_keras_serializable(package="biper_keras")
class WeightClip(keras.constraints.Constraint):
    """Clips weights to [-clip_value, clip_value] after every optimizer step.

    Args:
        clip_value: a finite number > 0 (Larq's default 1).
    """

    def __init__(self, clip_value=1.0):
        if isinstance(clip_value, bool) or not isinstance(clip_value, numbers.Real) or not clip_value > 0:
            raise ValueError(
                f"Argument `clip_value` must be a number > 0. Received: clip_value={clip_value!r}."
            )
        self.clip_value = float(clip_value)

    def __call__(self, w):
        return ops.clip(w, -self.clip_value, self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


weight_clip = WeightClip


for _name in ("weight_clip", "WeightClip"):
    _compat.register_constraint_name(_name, WeightClip)


def get(identifier):
    """`keras.constraints.get`, which (once this module is imported) knows `"weight_clip"`."""
    return keras.constraints.get(identifier)
