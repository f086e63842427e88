"""`binarize(model)`: a float Keras 3 model with its eligible convolutions and dense
layers replaced by quantized ones.

    model = keras.applications.ResNet50(weights=None)
    bnn, report = binarize(model, quantizer="biper")
    print(report.table())
"""

import dataclasses
import warnings

import keras
import numpy as np

from biper_keras import _compat
from biper_keras import quantizers as quantizers_lib
from biper_keras.rebuild import rebuild

__all__ = ["binarize", "BinarizeReport", "float_twin"]

_QUANT = {"Conv2D": "QuantConv2D", "Dense": "QuantDense"}


@dataclasses.dataclass
class BinarizeReport:
    binarized: list  # layer names
    kept: dict  # layer name -> why it stayed float

    def table(self):
        lines = [f"binarized {len(self.binarized)} layers, kept {len(self.kept)} float"]
        lines += [f"  {name}: binarized" for name in self.binarized]
        lines += [f"  {name}: float ({why})" for name, why in self.kept.items()]
        return "\n".join(lines)


def _rebuildable(model):
    return type(model) in (_compat.functional_class(), keras.Sequential)


def _why_not(layer):
    if type(layer) not in (keras.layers.Conv2D, keras.layers.Dense):
        return None  # not a candidate at all
    if isinstance(layer, keras.layers.Conv2D):
        if layer.groups != 1:
            return f"grouped convolution (groups={layer.groups}) has no binary LCE kernel"
        if layer.data_format != "channels_last":
            return "channels_first data format (LCE needs NHWC)"
    return ""


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):  # leaky or thresholded ones do pass negatives
        return not layer.negative_slope and not layer.threshold
    return getattr(getattr(layer, "activation", None), "__name__", None) == "relu"


def _follows_relu(layer):
    """Whether every input of `layer` is the output of a ReLU (a ReLU layer, an
    Activation("relu"), or a conv/dense with activation="relu")."""
    sources = _compat.inbound_operations(layer)
    return bool(sources) and all(_is_relu(source) for source in sources)


def binarize(model, quantizer="biper", *, input_quantizer="approx_sign", kernel_scale="channel",
             keep_first=True, keep_last=True, keep=()):
    """Returns `(binary_model, report)`.

    Every plain `Conv2D` / `Dense` becomes a `QuantConv2D` / `QuantDense` with
    `kernel_quantizer=quantizer` and `input_quantizer`, except the first and last of them
    (when `keep_first` / `keep_last`), layers named in `keep`, and layers LCE cannot run
    as binary (grouped or channels-first convs). SAME-padded convs get `pad_values=1.0`
    (LCE's fast path). The float weights become the latent weights; with
    `kernel_scale="channel"` alpha starts at the mean |w| of each output channel, so the
    binarized layer starts at the float layer's scale.

    Args:
        model: a Sequential or functional Keras 3 model.
        quantizer: the weight quantizer, as `biper_keras.quantizers.get` takes it.
        input_quantizer: the activation quantizer inserted before each binarized layer.
    """
    _check_rebuildable(model)
    kernel_q = keras.saving.serialize_keras_object(quantizers_lib.get(quantizer))
    input_q = keras.saving.serialize_keras_object(quantizers_lib.get(input_quantizer))
    chosen, kept = _choose(model, keep_first, keep_last, keep)
    binary = rebuild(model, _to_quantized(chosen, kernel_q, input_q, kernel_scale),
                     _latent_weights(chosen, kernel_scale))
    _warn_if_after_relu(model, chosen)
    order = [l.name for l in model.layers]
    report = BinarizeReport(
        binarized=[n for n in order if n in chosen],
        kept={n: kept[n] for n in order if n in kept},
    )
    return binary, report


def _check_rebuildable(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 model. Received: {type(model).__name__}.")
    if not _rebuildable(model):
        raise ValueError(
            f"binarize needs a Sequential or functional model; {type(model).__name__} is subclassed "
            "and cannot be rebuilt from its config. Build it functionally or use QuantConv2D directly."
        )


def _choose(model, keep_first, keep_last, keep):
    """(names of the layers to binarize, {name: why kept} for the candidates kept float)."""
    candidates = [l for l in model.layers if _why_not(l) is not None]
    kept = {}
    for layer in candidates:
        if _why_not(layer):
            kept[layer.name] = _why_not(layer)
    eligible = [l for l in candidates if l.name not in kept]
    if keep_first and eligible:
        kept[eligible[0].name] = "first layer (keep_first)"
    if keep_last and len(eligible) > 1:
        kept[eligible[-1].name] = "last layer (keep_last)"
    for name in keep:
        kept.setdefault(name, "named in keep")
    chosen = {l.name for l in eligible if l.name not in kept}
    return chosen, kept


def _to_quantized(chosen, kernel_q, input_q, kernel_scale):
    """The config edit that turns the chosen layers into their quantized classes."""

    def to_quantized(node):
        if node["class_name"] in _QUANT and node["config"].get("name") in chosen:
            config = node["config"]
            node.update(class_name=_QUANT[node["class_name"]], module="biper_keras.layers",
                        registered_name=f"biper_keras>{_QUANT[node['class_name']]}")
            config.update(kernel_quantizer=kernel_q, input_quantizer=input_q, kernel_scale=kernel_scale)
            if node["class_name"] == "QuantConv2D":
                config["pad_values"] = 1.0 if config.get("padding") == "same" else 0.0

    return to_quantized


def _latent_weights(chosen, kernel_scale):
    """The weights of each rebuilt layer: the float ones, plus alpha (mean |w| of each
    output channel) for the chosen layers with a per-channel scale."""

    def weights(layer):
        values = layer.get_weights()
        if layer.name in chosen and kernel_scale == "channel":
            kernel = values[0]
            values.append(np.mean(np.abs(kernel.reshape(-1, kernel.shape[-1])), axis=0))
        return values

    return weights


def _warn_if_after_relu(model, chosen):
    after_relu = [name for name in sorted(chosen) if _follows_relu(model.get_layer(name))]
    if after_relu:
        warnings.warn(
            f"binarize: the input of {', '.join(after_relu[:3])}"
            f"{f' (and {len(after_relu) - 3} more)' if len(after_relu) > 3 else ''} comes from a ReLU: every value is >= 0, so "
            "its binarized input is +1 almost everywhere and carries no information. Move the ReLU "
            "after the binary conv (Bi-Real / BiPer blocks: conv -> BatchNorm -> add), or keep the layer.",
            stacklevel=3)


def float_twin(model):
    """The inverse of `binarize`: the same Keras 3 model with every quantized layer
    replaced by its float Keras layer (`QuantConv2D` -> `Conv2D`, `QuantDense` -> `Dense`,
    and the 1-D, depthwise and separable convs likewise), carrying the latent kernels and
    biases; the per-channel scale alpha, if any, is dropped."""
    from biper_keras import layers as quant_layers

    swap = {"QuantConv2D": "Conv2D", "QuantDense": "Dense", "QuantConv1D": "Conv1D",
            "QuantDepthwiseConv2D": "DepthwiseConv2D", "QuantSeparableConv2D": "SeparableConv2D"}

    def to_float(node):
        if node["class_name"] in swap:
            node.update(class_name=swap[node["class_name"]], module="keras.layers", registered_name=None)
            for key in quant_layers.QUANTIZATION_CONFIG_KEYS:
                node["config"].pop(key, None)

    def latent_weights(layer):
        # A quantized layer's variables are its latent weights (quantization happens
        # when they are read); only alpha has no float counterpart.
        alpha = getattr(layer, "alpha", None)
        return [w for w in layer.weights if w is not alpha]

    return rebuild(model, to_float, latent_weights)
