"""Step 4 of a conversion: inspecting the flatbuffer: its ops, and which quantized
layers became LCE binary convolutions, which did not, and why (LCE imported lazily)."""

import collections
import re

import numpy as np

from biper_keras import _compat

from .results import LayerFusion


def inspect(flatbuffer, model, target):
    """(ops, report): the flatbuffer's operators as (name, output shape) in graph order,
    and a `LayerFusion` per quantized layer of `model`."""
    ops = ops_with_output_shapes(flatbuffer)
    return ops, fusion_report(model, ops, target, flatbuffer)


def op_histogram(flatbuffer):
    """Counts the operators of a TFLite flatbuffer by name (`LceBconv2d`, `CONV_2D`...)."""
    return collections.Counter(name for name, _ in ops_with_output_shapes(flatbuffer))


def ops_with_output_shapes(flatbuffer):
    """[(op name, shape of its first output)] of every operator, in graph order."""
    from larq_compute_engine.mlir.python import tflite_schema as schema

    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            names.append(code.CustomCode().decode())
        else:
            # Codes above 127 live in BuiltinCode; older files use the deprecated field.
            names.append(builtin_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    ops = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            shape = ()
            if op.OutputsLength():
                shape = tuple(int(d) for d in graph.Tensors(op.Outputs(0)).ShapeAsNumpy())
            ops.append((names[op.OpcodeIndex()], shape))
    return ops


def _binary(quantizer):
    return quantizer is not None and getattr(quantizer, "precision", 32) == 1


def _unfusable_reason(layer, target):
    """Why LCE cannot make a binary conv of `layer`, or "" if it should."""
    if layer.data_format != "channels_last":
        return "channels_first data format (LCE needs NHWC)"
    if not _binary(layer.kernel_quantizer):
        what = "no kernel quantizer" if layer.kernel_quantizer is None else "its output is not 1-bit"
        return f"float kernel ({what}, e.g. BiPer stage 1 or soft BNN++: harden it)"
    if not _binary(layer.input_quantizer):
        return "input not binarized (no 1-bit input_quantizer)"
    if layer.padding == "same" and layer.pad_values == 0.0 and target != "arm":
        return f"zero padding is only supported for target='arm' (use pad_values=1.0 on {target})"
    if getattr(layer, "symmetric_padding", False) and layer.pad_values == 0.0 and any(s > 1 for s in layer.strides):
        return "symmetric zero padding at stride > 1 (PyTorch's padding=k//2): use pad_values=1.0 to fuse"
    if layer.groups != 1:
        return f"grouped convolution (groups={layer.groups})"
    return ""


def _quantized_layers(model):
    """The quantized layers of `model` that have a quantizer set: this package's, or
    Larq's in a tf_keras model."""
    from biper_keras.layers import layer_quantizers, quantized_layers

    from .prepare import is_tf_keras

    if is_tf_keras(model):
        layers = [l for l in _compat.flatten_layers(model) if type(l).__module__.startswith("larq.")]
    else:
        layers = quantized_layers(model)
    return [layer for layer in layers if layer_quantizers(layer)]


def _is_conv2d(layer):
    from biper_keras.layers import QuantConv2D

    larq_conv = type(layer).__module__.startswith("larq.") and type(layer).__name__ == "QuantConv2D"
    return isinstance(layer, QuantConv2D) or larq_conv


# Quantized layers LCE has no binary op for: they run as float ops, whatever their
# quantizers (measured: the op each becomes in the flatbuffer).
_FLOAT_IN_LCE = {
    "QuantDense": ("dense", "LCE has no binary dense op: runs as float FULLY_CONNECTED"),
    "QuantConv1D": ("conv1d", "LCE binarizes 2-D convs only: runs as float CONV_2D"),
    "QuantDepthwiseConv2D": ("depthwise", "LCE has no binary depthwise conv: runs as float DEPTHWISE_CONV_2D"),
    "QuantSeparableConv2D": ("separable", "LCE has no binary depthwise conv: runs as float DEPTHWISE_CONV_2D "
                                          "+ CONV_2D"),
}


def _same_shape(keras_shape, tflite_shape):
    # A binary conv that feeds another binarizer writes bit-packed output: its channels
    # are then ceil(C / 32) int32 words.
    if len(keras_shape) != len(tflite_shape):
        return False
    *spatial, channels = keras_shape
    *t_spatial, t_channels = tflite_shape
    return all(k is None or k == t for k, t in zip(spatial, t_spatial)) and (
        channels is None or t_channels in (channels, -(-channels // 32))
    )


def _output_shape(layer):
    """Without the batch size. A subclassed model's layers have no symbolic output: their
    shape follows from the input shape they were built with."""
    try:
        return tuple(layer.output.shape[1:])
    except (AttributeError, ValueError):
        shape = _compat.built_input_shape(layer)
        return () if shape is None else tuple(layer.compute_output_shape(shape)[1:])


def _build_input_shape(layer):
    shape = _compat.built_input_shape(layer)
    return None if shape is None else tuple(shape)


def _projection_shape(layer):
    """The output shape (without the batch size) of the 1x1 convolution a token-wise
    projection runs as at inference (see `biper_keras.layers.base.tokenwise_conv`):
    QuantDense on a token sequence, or a token-wise QuantEinsumDense; else None."""
    from biper_keras.layers import QuantDense, QuantEinsumDense

    input_shape = _build_input_shape(layer)
    if input_shape is None:
        return None
    if isinstance(layer, QuantEinsumDense) and getattr(layer, "_tokenwise", False):
        contracted = len(layer._contracted)
    elif isinstance(layer, QuantDense) and len(input_shape) in (3, 4):
        contracted = 1
    else:
        return None
    # A size unknown when the layer was built (None) matches any size.
    positions = tuple(input_shape[1:len(input_shape) - contracted])
    if len(positions) not in (1, 2):
        return None
    units = int(np.prod(layer.latent_kernel.shape[contracted:]))
    return ((1,) + positions if len(positions) == 1 else positions) + (units,)


def _projection_reason(layer):
    """Why LCE cannot make a binary conv of the token-wise projection `layer`, or ""."""
    if not _binary(layer.kernel_quantizer):
        what = "no kernel quantizer" if layer.kernel_quantizer is None else "its output is not 1-bit"
        return f"float kernel ({what})"
    if not _binary(layer.input_quantizer):
        return "binary weights, float inputs (W1A32): LCE has no kernel for them"
    return ""


def _names(layers):
    """A name per layer: its name, or its path where the name is not unique (the query
    projection of every attention layer is called "query")."""
    count = collections.Counter(l.name for l in layers)
    return {id(l): l.name if count[l.name] == 1 else getattr(l, "path", None) or l.name for l in layers}


def layer_of_op(flatbuffer, model, index):
    """The innermost Keras layer of `model` named in the tensor names of operator `index`
    (TF scopes are layer names, possibly with a "_<n>" suffix added when traced again;
    a nested layer is found by its path, e.g. "block/attention/query"), or None."""
    from larq_compute_engine.mlir.python import tflite_schema as schema

    graph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(0)
    if index >= graph.OperatorsLength():
        return None
    op = graph.Operators(index)
    names = [graph.Tensors(op.Outputs(i)).Name().decode() for i in range(op.OutputsLength())]
    names += [graph.Tensors(op.Inputs(i)).Name().decode() for i in range(op.InputsLength()) if op.Inputs(i) >= 0]
    layers = list(_compat.flatten_layers(model))
    paths = [(tuple((getattr(l, "path", None) or l.name).split("/")), l) for l in layers]
    paths += [((l.name,), l) for l in layers]
    for name in names:
        raw = name.split(";")[0].split("/")[:-1]
        plain = [re.sub(r"_\d+$", "", s) for s in raw]
        for end in range(len(raw), 0, -1):  # innermost scope first, then the longest path
            found = [(len(path), layer) for path, layer in paths if len(path) <= end
                     and path in (tuple(raw[end - len(path):end]), tuple(plain[end - len(path):end]))]
            if found:
                return max(found, key=lambda f: f[0])[1]
    return None


def fusion_report(model, ops, target, flatbuffer=None):
    """A `LayerFusion` per quantized layer of `model`: what it runs as in the flatbuffer
    whose operators are `ops` (binary `LceBconv2d`, float with int8 weights, or float),
    and why."""
    bconvs = [(i, shape[1:]) for i, (name, shape) in enumerate(ops) if name == "LceBconv2d"]
    layers = _quantized_layers(model)
    names = _names(layers)
    int8 = set()
    if flatbuffer is not None:
        # The op after each DEQUANTIZE reads its int8 weights (see `weights.int8_weights`).
        found = [layer_of_op(flatbuffer, model, i + 1) for i, (name, _) in enumerate(ops[:-1])
                 if name == "DEQUANTIZE"]
        int8 = {id(l) for l in found if l is not None}
    rows = []  # (layer, kind, shape, the shape its binary conv would have, reason)
    for layer in layers:
        projection = None if _is_conv2d(layer) else _projection_shape(layer)
        if _is_conv2d(layer):
            rows.append((layer, "conv", _output_shape(layer), _output_shape(layer), _unfusable_reason(layer, target)))
        elif projection is not None:
            rows.append((layer, "projection", _output_shape(layer), projection, _projection_reason(layer)))
        else:
            kind, reason = _FLOAT_IN_LCE.get(type(layer).__name__, ("other", "LCE has no binary op for it"))
            rows.append((layer, kind, _output_shape(layer), None, reason))
    # Match binary convs in graph order by output shape (a BatchNorm folded into the op
    # keeps it); an unknown Keras size matches any size, so fully known shapes go first.
    matches = {}
    candidates = [r for r in rows if r[3] is not None and not (r[4] and r[1] == "projection")]
    for layer, _, _, expected, _ in sorted(candidates, key=lambda r: None in r[3]):
        match = next((b for b in bconvs if _same_shape(expected, b[1])), None)
        if match is not None:
            bconvs.remove(match)
            matches[id(layer)] = match[0]
    report = []
    for layer, kind, shape, expected, reason in rows:
        fused = id(layer) in matches
        if expected is not None and not fused and not reason:
            reason = "not matched by the converter (input binarizer not feeding the conv directly?)"
        runs = "LceBconv2d" if fused else "int8" if id(layer) in int8 else "float"
        if runs == "int8":
            reason += "; its binary weights are stored as int8 (lossless)"
        report.append(LayerFusion(names[id(layer)], kind, shape, fused, "" if fused else reason,
                                  matches.get(id(layer)), runs))
    return report
