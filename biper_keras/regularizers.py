"""Regularizers for BiPer weights."""

import keras
from keras import ops

from biper_keras.quantizers import check_positive_number

__all__ = ["SinSquared"]


@keras.saving.register_keras_serializable(package="biper_keras")
class SinSquared(keras.regularizers.Regularizer):
    r"""BiPer's CIFAR regularizer: `tau * mean(sin(omega * w)**2)`.

    The quantization error of BiPer, QE = E[sin^2] - (E|sin|)^2, is bounded above by
    E[sin^2], the term this penalizes; the authors add it per layer to the loss on
    CIFAR-10.
    The paper uses tau = 0.037 in stage 1 and 0.0468 in stage 2 on CIFAR-10.

    Args:
        tau: weight of the term, a finite number > 0.
        omega: the frequency; leave it unset (None) to take it from the `BiPer`
            kernel quantizer of the layer it regularizes (the quantized layers bind it
            when they are built from their arguments). A value that differs from that
            quantizer's is an error: the term must penalize the sine the layer uses.
    """

    def __init__(self, tau=0.037, omega=None):
        self.tau = check_positive_number("tau", tau)
        self.omega = None if omega is None else check_positive_number("omega", omega)

    def bind(self, quantizer, layer_name):
        """Ties `omega` to `quantizer` (the kernel quantizer of layer `layer_name`)."""
        omega = getattr(quantizer, "omega", None)
        if omega is None:
            if self.omega is None:
                raise ValueError(
                    f"Layer {layer_name!r}: SinSquared() without omega takes it from a BiPer kernel "
                    f"quantizer, and this layer's is {quantizer!r}; pass omega explicitly."
                )
            return self
        if self.omega is None:
            self.omega = omega
        elif self.omega != omega:
            raise ValueError(
                f"Layer {layer_name!r}: SinSquared(omega={self.omega:g}) regularizes a kernel quantized "
                f"with BiPer(omega={omega:g}): they must agree (leave SinSquared's omega unset)."
            )
        return self

    def __call__(self, x):
        if self.omega is None:
            raise ValueError("SinSquared has no omega: attach it to a layer with a BiPer kernel "
                             "quantizer (as kernel_regularizer) or pass omega.")
        return self.tau * ops.mean(ops.square(ops.sin(self.omega * x)))

    def get_config(self):
        return {"tau": self.tau, "omega": self.omega}
