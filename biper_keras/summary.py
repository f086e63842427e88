"""`summary(model)`: parameters, memory and MACs by precision, in the spirit of Larq's
`lq.models.summary`, for Keras 3 models, with the same counting rules:

- a weight's precision is its quantizer's (`kernel_quantizer.precision`), else 32 bits;
- a BatchNormalization counts its moving mean and variance only (gamma and beta fold
  into them at inference);
- a conv/dense layer does `kernel size x output pixels` MACs per kernel (two for a
  separable conv) at the precision max(input precision, kernel precision); a
  per-channel scale alpha is a 32-bit
  parameter but not a MAC (Larq has no alpha);
- a nested model (e.g. a Sequential block) is one row: the sums of its layers' rows;
  so is a layer that holds weighted layers (a `MultiHeadAttention`, a user's
  transformer block): the sums over its sublayers (quantizers aside) and its own
  weights. An `EinsumDense` does `kernel size x output positions` MACs, its output
  positions being the output's elements over the kernel's output units; attention's
  own products (QK^T, AV) have no weights and are not counted (as in Larq).
"""

import dataclasses

import keras
import numpy as np

from biper_keras import _compat
from biper_keras._tables import render

__all__ = ["summary", "LayerStats", "ModelStats"]

_MAC_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
    keras.layers.EinsumDense,
)


@dataclasses.dataclass
class LayerStats:
    """One row of the Larq-style summary: a layer's input precision (bits; None when not
    quantized), output shape, 1-bit and 32-bit parameters, memory in bits, and 1-bit
    and 32-bit multiply-accumulates per sample."""

    name: str
    input_precision: int  # None: not quantized
    output_shape: tuple
    params_1bit: int
    params_32bit: int
    memory_bits: int
    macs_1bit: int
    macs_32bit: int


@dataclasses.dataclass
class ModelStats:
    """The Larq-style summary of a model: its `LayerStats` rows, with totals
    (`total(field)`, parameter and memory counts)."""

    name: str
    layers: list

    def total(self, field):
        return sum(getattr(layer, field) for layer in self.layers)

    @property
    def params(self):
        return self.total("params_1bit") + self.total("params_32bit")

    @property
    def memory_bytes(self):
        return self.total("memory_bits") / 8

    @property
    def float32_bytes(self):
        return self.params * 4

    @property
    def compression(self):
        return self.memory_bytes / self.float32_bytes if self.params else 1.0

    @property
    def binary_mac_ratio(self):
        macs = self.total("macs_1bit") + self.total("macs_32bit")
        return self.total("macs_1bit") / macs if macs else 0.0

    def to_dict(self):
        return {
            "name": self.name,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "params": self.params,
            "params_1bit": self.total("params_1bit"),
            "params_32bit": self.total("params_32bit"),
            "memory_bytes": self.memory_bytes,
            "float32_bytes": self.float32_bytes,
            "compression": self.compression,
            "macs_1bit": self.total("macs_1bit"),
            "macs_32bit": self.total("macs_32bit"),
            "binary_mac_ratio": self.binary_mac_ratio,
        }

    def table(self):
        header = ("layer", "in bits", "output shape", "1-bit", "32-bit", "memory kB", "1-bit MACs", "32-bit MACs")
        rows = [
            (l.name, l.input_precision or "-", l.output_shape, f"{l.params_1bit:,}", f"{l.params_32bit:,}",
             f"{l.memory_bits / 8 / 1024:.2f}", f"{l.macs_1bit:,}", f"{l.macs_32bit:,}")
            for l in self.layers
        ]
        total = ("total", "", "", f"{self.total('params_1bit'):,}", f"{self.total('params_32bit'):,}",
                 f"{self.memory_bytes / 1024:.2f}", f"{self.total('macs_1bit'):,}", f"{self.total('macs_32bit'):,}")
        lines = [render(header, rows, right=range(3, 8), footer=total)]
        lines += [
            f"model size {self.memory_bytes / 1024:.2f} KiB, float32 equivalent {self.float32_bytes / 1024:.2f} KiB, "
            f"compression {self.compression:.3f} (parameter memory {1 / self.compression:.1f}x smaller; "
            "a .tflite file also holds the graph)",
            f"binarized MACs: {self.binary_mac_ratio:.4f} of {self.total('macs_1bit') + self.total('macs_32bit'):,}",
        ]
        return "\n".join(lines)


def _precision(quantizer):
    return None if quantizer is None else getattr(quantizer, "precision", 32)


# A kernel's name -> the attribute holding its quantizer. Keras 3 names a depthwise
# conv's kernel "kernel"; QuantDepthwiseConv2D quantizes it with `depthwise_quantizer`.
_QUANTIZER_OF = {"kernel": ("kernel_quantizer", "depthwise_quantizer"),
                 "depthwise_kernel": ("depthwise_quantizer",),
                 "pointwise_kernel": ("pointwise_quantizer",)}


def _weight_bits(layer, name):
    for attr in _QUANTIZER_OF.get(name, ()):
        bits = _precision(getattr(layer, attr, None))
        if bits is not None:
            return bits
    return 32


def _output_shape(layer, hint=None):
    """The layer's output shape, -1 for unknown sizes. `hint`, the output shape of the
    layer that holds it, fills unknown leading sizes (the tokens of an attention
    layer's projections, which Keras builds with an unknown token count)."""
    shape = _known_output_shape(layer)
    if shape is None or hint is None:
        return shape
    return tuple(h if d == -1 and i > 0 and i < len(hint) else d for i, (d, h) in
                 enumerate(zip(shape, tuple(hint) + (None,) * len(shape))))


def _known_output_shape(layer):
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        # A layer called inside another layer has no symbolic output: its shape
        # follows from the input shape it was built with.
        built = _compat.built_input_shape(layer)
        if built is None:
            return None
        try:
            shape = layer.compute_output_shape(built)
        except Exception:
            return None
    return tuple(-1 if d is None else int(d) for d in shape)


def _output_positions(layer, shape):
    """How many times each kernel weight is used per sample."""
    if len(shape) <= 2:
        return 1
    if isinstance(layer, keras.layers.EinsumDense):
        operands, output = layer.equation.split("->")
        kernel = operands.split(",")[1]
        units = int(np.prod([d for d, c in zip(layer._kernel.shape, kernel) if c in output]))
        return int(np.prod(shape[1:])) // max(units, 1)
    return int(np.prod(shape[1:-1]))


def _layer_stats(layer, hint=None):
    weights = list(layer.weights)
    names = [w.path.split("/")[-1] for w in weights]
    if isinstance(layer, keras.layers.BatchNormalization):
        keep = [i for i, n in enumerate(names) if n not in ("gamma", "beta")
                or ("moving_mean" not in names or "moving_variance" not in names)]
        weights, names = [weights[i] for i in keep], [names[i] for i in keep]
    in_bits = _precision(getattr(layer, "input_quantizer", None))
    shape = _output_shape(layer, hint)
    counts_macs = isinstance(layer, _MAC_LAYERS) and shape and -1 not in shape[1:]
    pixels = _output_positions(layer, shape) if counts_macs else 1
    p1 = p32 = memory = m1 = m32 = 0
    for w, name in zip(weights, names):
        count = int(np.prod(w.shape))
        bits = _weight_bits(layer, name)
        memory += bits * count
        if bits == 1:
            p1 += count
        else:
            p32 += count
        # Larq's rule: every kernel does count x output-pixels MACs at the precision
        # max(input bits, kernel bits); biases and our scale alpha do none.
        if counts_macs and name in _QUANTIZER_OF:
            if max(in_bits or 32, bits) == 1:
                m1 += count * pixels
            else:
                m32 += count * pixels
    return LayerStats(layer.name, in_bits, shape, p1, p32, memory, m1, m32)


def _weighted_sublayers(layer):
    from biper_keras.quantizers import Quantizer

    inside = _compat.flatten_layers(layer)
    deeper = {id(deep) for inner in inside for deep in _compat.flatten_layers(inner)}
    return [inner for inner in inside if id(inner) not in deeper and not isinstance(inner, Quantizer) and inner.weights]


def _stats(layer, hint=None):
    if isinstance(layer, keras.Model):
        rows = [_stats(inner) for inner in layer.layers]
    else:
        inner = _weighted_sublayers(layer)
        if not inner:
            return _layer_stats(layer, hint)
        shape = _output_shape(layer, hint)
        rows = [_stats(sub, shape) for sub in inner]
        held = {id(w) for sub in inner for w in sub.weights}
        own = [w for w in layer.weights if id(w) not in held]
        if own:
            rows.append(_own_weights_stats(layer, own))
    sums = {f: sum(getattr(r, f) for r in rows) for f in
            ("params_1bit", "params_32bit", "memory_bits", "macs_1bit", "macs_32bit")}
    return LayerStats(layer.name, rows[0].input_precision if rows else None, _output_shape(layer), **sums)


def _own_weights_stats(layer, weights):
    """A container layer's own weights (e.g. a block's scale), as 32-bit parameters."""
    count = sum(int(np.prod(w.shape)) for w in weights)
    return LayerStats(layer.name, None, None, 0, count, 32 * count, 0, 0)


def summary(model, print_fn=print):
    """Prints (with `print_fn`, None to stay silent) and returns a `ModelStats`.

    Raises:
        TypeError: for anything but a Keras 3 model.
        ValueError: for a model that is not built yet (as Larq).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 model. Received: {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} has not been built yet: build it first (`model.build(input_shape)`, "
            "a call on data, or an `Input` as its first layer)."
        )
    stats = ModelStats(model.name, [_stats(layer) for layer in model.layers])
    if print_fn is not None:
        print_fn(stats.table())
    return stats
