"""Conversion to TFLite with Larq Compute Engine (TensorFlow backend only).

TensorFlow and LCE are imported inside the functions: importing this module costs
nothing on the JAX or torch backends.
"""

import collections
import tempfile

__all__ = ["convert_keras_model", "op_histogram"]


def convert_keras_model(model, *, target="arm"):
    """Converts a Keras 3 model (TF backend) to an LCE TFLite flatbuffer (bytes).

    The route is `model.export` (a SavedModel of the inference graph) followed by
    `larq_compute_engine.convert_saved_model`: LCE's own `convert_keras_model` only
    knows tf_keras models.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "Conversion needs the TensorFlow backend (KERAS_BACKEND=tensorflow); this "
            f"process runs Keras on {keras.backend.backend()!r}. Save the weights, "
            "rebuild the model on the TensorFlow backend and convert from there."
        )
    if target not in ("arm", "xcore"):
        raise ValueError(f"Argument `target` must be 'arm' or 'xcore'. Received: {target!r}.")
    import larq_compute_engine as lce

    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        return lce.convert_saved_model(saved_model_dir, target=target)


def op_histogram(flatbuffer):
    """Counts the operators of a TFLite flatbuffer by name (`LceBconv2d`, `CONV_2D`...)."""
    from larq_compute_engine.mlir.python import tflite_schema as schema

    builtin_names = {
        v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")
    }
    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            names.append(code.CustomCode().decode())
        else:
            # Codes above 127 live in BuiltinCode; older files use the deprecated field.
            names.append(builtin_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    counts = collections.Counter()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            counts[names[graph.Operators(o).OpcodeIndex()]] += 1
    return counts
