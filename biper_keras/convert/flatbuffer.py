"""Step 3 of a conversion: a `FrozenGraph` to a TFLite flatbuffer with LCE's graph
converter (LCE imported lazily)."""


def to_flatbuffer(frozen, target):
    """The flatbuffer (bytes) LCE's converter makes of `frozen` for `target`."""
    from larq_compute_engine.mlir._tf_tfl_flatbuffer import convert_graphdef_to_tflite_flatbuffer

    return convert_graphdef_to_tflite_flatbuffer(
        frozen.graph_def, frozen.input_names, frozen.input_types, frozen.input_shapes, frozen.output_names,
        False,  # no int8 quantization of activations
        target,
        None,
    )
