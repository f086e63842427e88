"""Optional step between the flatbuffer and its inspection: binary weights stored as int8.

LCE has no kernel for binary weights with float inputs (W1A32): such a layer runs as a
float op whose constant weights are +-alpha per output channel. That tensor is exactly
an int8 tensor of +-1 with a per-channel scale alpha (zero point 0): dequantizing gives
back +-alpha bit for bit (1 * alpha is exact; a scale alpha/127 with +-127 could round).
`int8_weights` stores every such weight tensor that way, followed by TFLite's builtin
`DEQUANTIZE` into the float tensor the op reads, so the op and its outputs stay exactly
the float file's, at a quarter of the weight bytes. Weights that are not +-alpha per
channel (a float layer's) are left as they are.
"""

import dataclasses

import numpy as np

# builtin op -> (index of its weight input, the weight's output-channel axis)
_WEIGHT_OPS = {"FULLY_CONNECTED": (1, 0), "CONV_2D": (1, 0), "DEPTHWISE_CONV_2D": (1, 3), "BATCH_MATMUL": (1, -1)}


@dataclasses.dataclass
class Int8Weights:
    flatbuffer: bytes
    ops: list  # indices (in the original flatbuffer) of the ops whose weights became int8
    bytes_saved: int


def _binary_scale(values, axis):
    """alpha per channel along `axis` when every value is +-alpha of its channel, else None."""
    if values.size == 0:
        return None
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    alpha = np.abs(moved).max(axis=1)
    if not np.all(np.abs(moved) == alpha[:, None]):
        return None
    return alpha


def int8_weights(flatbuffer):
    """`flatbuffer` with every +-alpha-per-channel weight of a FULLY_CONNECTED, CONV_2D,
    DEPTHWISE_CONV_2D or BATCH_MATMUL op stored as int8; an `Int8Weights`."""
    import flatbuffers
    from larq_compute_engine.mlir.python import tflite_schema as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    opcode_names = [None if c.customCode else names[max(c.builtinCode, c.deprecatedBuiltinCode)]
                    for c in model.operatorCodes]
    dequantize = None
    changed, saved = [], 0
    for graph in model.subgraphs:
        done = {}  # float tensor index -> its int8 source
        operators = []
        for index, op in enumerate(graph.operators or []):
            spec = _WEIGHT_OPS.get(opcode_names[op.opcodeIndex])
            source = None
            if spec is not None and len(op.inputs) > spec[0] and op.inputs[spec[0]] >= 0:
                tensor_index = op.inputs[spec[0]]
                tensor = graph.tensors[tensor_index]
                data = model.buffers[tensor.buffer].data if tensor.buffer else None
                if tensor_index in done:
                    changed.append(index)
                elif tensor.type == schema.TensorType.FLOAT32 and data is not None and len(data):
                    values = np.frombuffer(bytes(bytearray(data)), "<f4").reshape(tensor.shape)
                    axis = spec[1] % values.ndim
                    if spec[0] and opcode_names[op.opcodeIndex] == "BATCH_MATMUL" and op.builtinOptions.adjY:
                        axis = values.ndim - 2
                    alpha = _binary_scale(values, axis)
                    if alpha is not None:
                        if dequantize is None:
                            dequantize = _opcode(model, schema, "DEQUANTIZE")
                        source = _int8_tensor(model, graph, schema, tensor, values, alpha, axis)
                        done[tensor_index] = source
                        saved += values.nbytes - values.size
                        changed.append(index)
            if source is not None:
                op_dequantize = schema.OperatorT()
                op_dequantize.opcodeIndex, op_dequantize.inputs, op_dequantize.outputs = dequantize, [source], [
                    op.inputs[spec[0]]]
                operators.append(op_dequantize)
            operators.append(op)
        graph.operators = operators
    if not changed:
        return Int8Weights(flatbuffer, [], 0)
    _drop_unused_buffers(model)
    builder = flatbuffers.Builder(len(flatbuffer))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return Int8Weights(bytes(builder.Output()), changed, saved)


def _drop_unused_buffers(model):
    """Empties the buffers no tensor refers to any more (the float weights replaced)."""
    used = {t.buffer for graph in model.subgraphs for t in graph.tensors}
    for index, buffer in enumerate(model.buffers):
        if index not in used and index > 0:
            buffer.data = None


def _opcode(model, schema, name):
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, name)
    code.version = 4  # int8 with per-channel scales
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _int8_tensor(model, graph, schema, tensor, values, alpha, axis):
    """Appends the int8 +-1 tensor with scale alpha for `tensor`'s values and makes
    `tensor` a computed one (the DEQUANTIZE's output); returns the new tensor's index."""
    shape = [1] * values.ndim
    shape[axis] = -1
    q = np.sign(values).astype(np.int8)
    buffer = schema.BufferT()
    buffer.data = q.tobytes()
    model.buffers.append(buffer)
    quantization = schema.QuantizationParametersT()
    quantization.scale = [float(a) if a > 0 else 1.0 for a in alpha]
    quantization.zeroPoint = [0] * len(alpha)
    quantization.quantizedDimension = axis
    int8 = schema.TensorT()
    int8.shape, int8.type, int8.buffer = list(values.shape), schema.TensorType.INT8, len(model.buffers) - 1
    int8.name = (tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name) + "/int8"
    int8.quantization = quantization
    graph.tensors.append(int8)
    tensor.buffer = 0  # the empty buffer: computed, not constant
    return len(graph.tensors) - 1
