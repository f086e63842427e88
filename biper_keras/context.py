"""Context managers with Larq's meaning (`larq.context`), for Keras 3.

- `quantized_scope(True)`: a quantized layer's `kernel` reads as the quantized kernel;
  outside it (the default) `kernel` is the latent real-valued variable, as in Larq.
  The forward pass is quantized either way.
- `metrics_scope(["flip_ratio"])`: quantizers that layers create inside it from names
  or configs (`kernel_quantizer="ste_sign"`) get those training metrics, unless they
  were given `metrics=` themselves.
"""

import contextlib
import threading

from biper_keras.quantizers.core import check_metrics

__all__ = ["quantized_scope", "should_quantize", "metrics_scope", "get_training_metrics"]

_state = threading.local()
_training_metrics = set()


@contextlib.contextmanager
def quantized_scope(quantize):
    """Within it, quantized layers' `kernel` returns the quantized kernel if `quantize`
    is True, the latent weights if False. Nested scopes restore the outer value."""
    if not isinstance(quantize, bool):
        raise ValueError(f"Argument `quantize` must be True or False. Received: quantize={quantize!r}.")
    backup = should_quantize()
    _state.should_quantize = quantize
    try:
        yield quantize
    finally:
        _state.should_quantize = backup


def should_quantize():
    """The current `quantized_scope` value (False outside any scope)."""
    return getattr(_state, "should_quantize", False)


@contextlib.contextmanager
def metrics_scope(metrics=()):
    """Adds training metrics (`"flip_ratio"`) to kernel quantizers created inside it."""
    metrics = check_metrics(list(metrics))
    backup = set(_training_metrics)
    _training_metrics.update(metrics)
    try:
        yield _training_metrics
    finally:
        _training_metrics.clear()
        _training_metrics.update(backup)


def get_training_metrics():
    """The live set of training metrics of the current `metrics_scope`."""
    return _training_metrics
