"""Which quantized layers should become LCE binary convolutions, which did, and why not."""

from biper_keras import _compat

from .results import LayerFusion


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
    from biper_keras.layers import layer_quantizers, quantized_layers

    return [layer for layer in quantized_layers(model) if layer_quantizers(layer)]


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


def _fusion_report(model, ops, target):
    from biper_keras.layers import QuantConv2D

    bconvs = [(i, shape[1:]) for i, (name, shape) in enumerate(ops) if name == "LceBconv2d"]
    report = []
    for layer in _quantized_layers(model):
        shape = _output_shape(layer)
        if not isinstance(layer, QuantConv2D):
            kind, reason = _FLOAT_IN_LCE.get(type(layer).__name__, ("other", "LCE has no binary op for it"))
            report.append(LayerFusion(layer.name, kind, shape, False, reason))
            continue
        reason = _unfusable_reason(layer, target)
        # Match binary convs in graph order by output shape (a BatchNorm folded into
        # the op keeps it); unknown Keras dimensions match any size.
        match = next((b for b in bconvs if _same_shape(shape, b[1])), None)
        fused = match is not None
        if fused:
            bconvs.remove(match)
        elif not reason:
            reason = "not matched by the converter (input binarizer not feeding the conv directly?)"
        report.append(LayerFusion(layer.name, "conv", shape, fused, "" if fused else reason,
                                  match[0] if fused else None))
    return report
