"""`binarize(model)`: a float Keras 3 model with its eligible convolutions, dense
layers and attention layers replaced by quantized ones.

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
from biper_keras.rebuild import own_variables, rebuild

__all__ = ["binarize", "BinarizeReport", "float_twin"]

_QUANT = {"Conv2D": "QuantConv2D", "Dense": "QuantDense", "EinsumDense": "QuantEinsumDense",
          "MultiHeadAttention": "QuantMultiHeadAttention"}
_FLOAT = {"QuantConv2D": "Conv2D", "QuantDense": "Dense", "QuantConv1D": "Conv1D",
          "QuantDepthwiseConv2D": "DepthwiseConv2D", "QuantSeparableConv2D": "SeparableConv2D",
          "QuantEinsumDense": "EinsumDense", "QuantMultiHeadAttention": "MultiHeadAttention"}
_CANDIDATES = (keras.layers.Conv2D, keras.layers.Dense, keras.layers.EinsumDense, keras.layers.MultiHeadAttention)


@dataclasses.dataclass
class BinarizeReport:
    """What `binarize` did: the names of the layers it made binary, and for each layer
    it kept in float, why (`table()` prints both)."""

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
    if type(layer) not in _CANDIDATES:
        return None  # not a candidate at all
    if getattr(layer, "quantization_mode", None) is not None or getattr(layer, "lora_enabled", False):
        return "already quantized by Keras (quantize() or LoRA)"
    if isinstance(layer, keras.layers.Conv2D):
        if layer.groups != 1:
            return f"grouped convolution (groups={layer.groups}) has no binary LCE kernel"
        if layer.data_format != "channels_last":
            return "channels_first data format (LCE needs NHWC)"
    return ""


def _layers_in_graph(model, keep=()):
    """The layers of `model` and of the models nested in it (whose configs hold their
    layers), in order; raises ValueError for a layer that holds a convolution, dense or
    attention layer in its own code, which a rebuild from the config cannot reach."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if not _rebuildable(layer) and layer.name not in keep:
                _refuse_held(layer)
            found += _layers_in_graph(layer, keep) if _rebuildable(layer) else [layer]
            continue
        found.append(layer)
        if type(layer) not in _CANDIDATES and layer.name not in keep:
            _refuse_held(layer)
    return found


def _refuse_held(layer):
    held = [inner for inner in _compat.flatten_layers(layer) if type(inner) in _CANDIDATES]
    if held:
        names = ", ".join(f"{type(h).__name__} {h.name!r}" for h in held[:3])
        raise ValueError(
            f"binarize cannot reach inside layer {layer.name!r} ({type(layer).__name__}): it creates {names}"
            f"{f' and {len(held) - 3} more' if len(held) > 3 else ''} in its own code, so its config does not "
            "hold them and a rebuilt model would get them float. Build the block from Keras layers in a "
            "functional model (or a nested Sequential/functional model), or with biper_keras.layers' "
            "QuantDense / QuantEinsumDense / QuantMultiHeadAttention directly, or pass it in `keep`."
        )


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

    Every plain `Conv2D` / `Dense` / `EinsumDense` / `MultiHeadAttention` becomes a
    `QuantConv2D` / `QuantDense` / `QuantEinsumDense` / `QuantMultiHeadAttention` (all
    four projections quantized, the attention itself float) with
    `kernel_quantizer=quantizer` and `input_quantizer`, except the first and last of them
    (when `keep_first` / `keep_last`), layers named in `keep`, and layers LCE cannot run
    as binary (grouped or channels-first convs). SAME-padded convs get `pad_values=1.0`
    (LCE's fast path). The float weights become the latent weights; with
    `kernel_scale="channel"` alpha starts at the mean |w| of each output channel (unit),
    so the binarized layer starts at the float layer's scale.

    Layers of nested Sequential/functional models are reached. A custom layer that
    creates convolution, dense or attention layers in its own code (a user's
    `TransformerBlock`, keras-hub's encoder layers) is refused with its name: its
    config does not hold those layers, so a rebuild cannot replace them.

    Args:
        model: a Sequential or functional Keras 3 model.
        quantizer: the weight quantizer, as `biper_keras.quantizers.get` takes it.
        input_quantizer: the activation quantizer inserted before each binarized layer.
    """
    _check_rebuildable(model)
    kernel_q = keras.saving.serialize_keras_object(quantizers_lib.get(quantizer))
    input_q = keras.saving.serialize_keras_object(quantizers_lib.get(input_quantizer))
    for name in keep:
        if not isinstance(name, str):
            raise TypeError(f"Argument `keep` must hold layer names. Received: keep={keep!r}.")
    graph = _layers_in_graph(model, set(keep))
    chosen, kept = _choose(graph, keep_first, keep_last, keep)
    binary = rebuild(model, _to_quantized(chosen, kernel_q, input_q, kernel_scale), pair_weights=_latent_weights)
    _warn_if_after_relu(model, chosen)
    order = [l.name for l in graph]
    report = BinarizeReport(
        binarized=[n for n in order if n in chosen],
        kept={n: kept[n] for n in order if n in kept},
    )
    return binary, report


def _check_rebuildable(model):
    """TypeError/ValueError at once unless `model` is a built Sequential or functional
    Keras 3 model (its weights are carried, so they must exist)."""
    if not isinstance(model, keras.Model):
        received = (f"model={model!r}, a file name: load it first, keras.models.load_model(path)"
                    if isinstance(model, str) else f"{type(model).__name__}")
        raise TypeError(f"Argument `model` must be a Keras 3 model (Sequential or functional). Received: {received}.")
    if not _rebuildable(model):
        raise ValueError(
            f"binarize needs a Sequential or functional model; {type(model).__name__} is subclassed "
            "and cannot be rebuilt from its config. Build it functionally or use QuantConv2D directly."
        )
    if not model.built:
        raise ValueError(
            f"Argument `model` must be built (its weights become the latent weights). Received: Sequential "
            f"{model.name!r} with no input shape yet: start it with keras.Input(shape), or call "
            "model.build((None, *shape)).")


def _choose(layers, keep_first, keep_last, keep):
    """(names of the layers to binarize, {name: why kept} for the candidates kept float)."""
    candidates = [l for l in layers if _why_not(l) is not None]
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


def _latent_weights(source, target):
    """The weights of a rebuilt (possibly nested) layer: the float ones, plus alpha
    (mean |w| of each output unit) where the quantized layer has a scale."""
    values = [np.array(w) for w in own_variables(source)]
    if getattr(target, "alpha", None) is not None and getattr(source, "alpha", None) is None:
        values.append(_mean_abs_per_unit(values[0], target))
    return values


def _mean_abs_per_unit(kernel, layer):
    """mean |w| over the kernel's input axes, in the shape of `layer`'s alpha."""
    units = getattr(layer, "_unit_axes", None) or (kernel.ndim - 1,)
    contracted = tuple(i for i in range(kernel.ndim) if i not in units)
    return np.mean(np.abs(kernel), axis=contracted).reshape(layer.alpha.shape)


def _warn_if_after_relu(model, chosen):
    top = {l.name for l in model.layers}
    after_relu = [name for name in sorted(chosen) if name in top and _follows_relu(model.get_layer(name))]
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
    `QuantEinsumDense` -> `EinsumDense`, `QuantMultiHeadAttention` ->
    `MultiHeadAttention`, and the 1-D, depthwise and separable convs likewise), carrying
    the latent kernels and biases; the scale alpha, if any, and the quantizers' own
    variables (an annealed mu) are dropped."""
    from biper_keras import layers as quant_layers

    def to_float(node):
        if node["class_name"] in _FLOAT:
            node.update(class_name=_FLOAT[node["class_name"]], module="keras.layers", registered_name=None)
            for key in quant_layers.QUANTIZATION_CONFIG_KEYS:
                node["config"].pop(key, None)

    def latent_weights(source, target):
        # A quantized layer's variables are its latent weights (quantization happens
        # when they are read); only alpha has no float counterpart.
        alpha = getattr(source, "alpha", None)
        return [np.array(w) for w in own_variables(source) if w is not alpha]

    return rebuild(model, to_float, pair_weights=latent_weights)
