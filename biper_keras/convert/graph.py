"""Step 2 of a conversion: the graph that LCE converts, a model's inference function,
frozen, with every per-channel constant of an element-wise op given as a 1-D tensor
(TensorFlow imported lazily).

Why: Keras 3 reshapes per-channel constants to the input's rank whenever the channel axis
is given as a positive number. `BatchNormalization(axis=3)` (every `keras.applications`
model, and every model brought over from tf_keras/Larq) multiplies and adds (1, 1, 1, C)
constants; so does a `Rescaling` with per-channel arrays or a layer holding a (1, 1, 1, C)
weight. LCE 0.16 folds such a constant into the `LceBconv2d` before it unchanged, and
its kernel then refuses to prepare ("NumDimensions(post_activation_multiplier) != 1").
Against a tensor of rank >= the constant's, a (C,) constant broadcasts to exactly the
same values, so each such operand is reshaped to (C,) before conversion.

The exact gelu (Keras's default `gelu`, `tf.nn.gelu`) is traced as
`0.5 x erfc(-x / sqrt 2)`, and TFLite has no builtin for `erfc`: the file would need an
`Erfc` custom op no interpreter has. Each such `erfc(-x c)` is rewritten to the same value
`1 + erf(x c)`, the form TFLite's converter fuses, with the `0.5 x` around it, into its
builtin `GELU`. The tanh approximation already converts to `GELU`.
"""

import collections
import dataclasses

_ELEMENTWISE = {"Mul", "Add", "AddV2", "Sub", "RealDiv", "Div"}


def _node_name(ref):
    return ref.lstrip("^").split(":")[0]


def _constant_nodes(graph_def):
    """Names of the nodes whose value does not depend on the graph's inputs."""
    from tensorflow.python.framework import op_def_registry

    nodes = {n.name: n for n in graph_def.node}
    inputs = {n.name: [_node_name(i) for i in n.input if not i.startswith("^")] for n in graph_def.node}
    waiting = {name: len(ins) for name, ins in inputs.items()}
    users = collections.defaultdict(list)
    for name, ins in inputs.items():
        for i in ins:
            users[i].append(name)
    ready = collections.deque(name for name, count in waiting.items() if count == 0)
    constant = set()
    while ready:  # topological order (Kahn), so every input is decided first
        name = ready.popleft()
        node = nodes[name]
        op_def = op_def_registry.get(node.op)
        if node.op == "Const" or (
            inputs[name] and op_def is not None and not op_def.is_stateful
            and all(i in constant for i in inputs[name])
        ):
            constant.add(name)
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return constant


def _channel_constant(const_shape, other_shape):
    """C when `const_shape` is (1, ..., 1, C) of rank 2 or more and broadcasts against
    `other_shape` to `other_shape` with its channels last; else None."""
    if const_shape.rank is None or other_shape.rank is None:
        return None
    dims, other = const_shape.as_list(), other_shape.as_list()
    if not 2 <= len(dims) <= len(other) or any(d != 1 for d in dims[:-1]):
        return None
    if dims[-1] is None or (dims[-1] != 1 and dims[-1] != other[-1]):
        return None
    return dims[-1]


def _const_value(node):
    import tensorflow as tf

    return tf.make_ndarray(node.attr["value"].tensor) if node.op == "Const" else None


def rewrite_exact_gelu(graph_def):
    """Rewrites every `Erfc(Mul(Neg(x), c))` (c a scalar constant) to `AddV2(1, Erf(Mul(x, c)))`
    in place, under the Erfc node's name (its users are unchanged). Returns the names of
    the rewritten nodes."""
    import tensorflow as tf

    nodes = {n.name: n for n in graph_def.node}
    changed, added = [], []
    for node in graph_def.node:
        if node.op != "Erfc" or not node.input:
            continue
        scaled = nodes.get(_node_name(node.input[0]))
        if scaled is None or scaled.op != "Mul":
            continue
        operands = [nodes.get(_node_name(i)) for i in scaled.input[:2]]
        negated = next((o for o in operands if o is not None and o.op == "Neg"), None)
        constant = next((o for o in operands if o is not None and o.op == "Const"), None)
        if negated is None or constant is None or _const_value(constant).size != 1:
            continue
        dtype = node.attr["T"]
        mul = tf.compat.v1.NodeDef(name=f"{node.name}/gelu_scaled", op="Mul",
                                   input=[negated.input[0], constant.name])
        erf = tf.compat.v1.NodeDef(name=f"{node.name}/gelu_erf", op="Erf", input=[mul.name])
        one = tf.compat.v1.NodeDef(name=f"{node.name}/gelu_one", op="Const")
        one.attr["dtype"].type = dtype.type
        one.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(1.0, tf.dtypes.as_dtype(dtype.type)))
        for n in (mul, erf):
            n.attr["T"].CopyFrom(dtype)
        node.op = "AddV2"
        del node.input[:]
        node.input.extend([one.name, erf.name])
        added += [mul, erf, one]
        changed.append(node.name)
    graph_def.node.extend(added)
    return changed


def flatten_channel_constants(graph_def, shape_of):
    """Reshapes to (C,) every (1, ..., 1, C) constant operand of an element-wise op whose
    other operand is not constant, in place. `shape_of(tensor_name)` gives a
    `tf.TensorShape`. Returns the names of the ops changed."""
    import tensorflow as tf

    constant = _constant_nodes(graph_def)
    changed, added = [], []
    for node in graph_def.node:
        if node.op not in _ELEMENTWISE or len(node.input) < 2 or node.input[1].startswith("^"):
            continue
        a, b = node.input[0], node.input[1]
        if (_node_name(a) in constant) == (_node_name(b) in constant):
            continue
        index = 0 if _node_name(a) in constant else 1
        channels = _channel_constant(shape_of(node.input[index]), shape_of(node.input[1 - index]))
        if channels is None:
            continue
        shape = tf.compat.v1.NodeDef(name=f"{node.name}/channels_1d_shape", op="Const")
        shape.attr["dtype"].type = tf.int32.as_datatype_enum
        shape.attr["value"].tensor.CopyFrom(tf.make_tensor_proto([channels], tf.int32))
        reshape = tf.compat.v1.NodeDef(name=f"{node.name}/channels_1d", op="Reshape",
                                       input=[node.input[index], shape.name])
        reshape.attr["T"].CopyFrom(node.attr["T"])
        reshape.attr["Tshape"].type = tf.int32.as_datatype_enum
        node.input[index] = reshape.name
        added += [shape, reshape]
        changed.append(node.name)
    graph_def.node.extend(added)
    return changed


@dataclasses.dataclass
class FrozenGraph:
    """What LCE's graph converter takes: a serialized `GraphDef` and its inputs and outputs."""

    graph_def: bytes
    input_names: list
    input_types: list  # TensorFlow dtype names, e.g. "DT_FLOAT"
    input_shapes: list  # batch size 1, as LCE's own converter sets it (its interpreter runs sample by sample)
    output_names: list
    name: str = "model"  # the model's, for messages


def freeze(prepared):
    """Step 2: `prepared.model(x, training=False)` traced with `prepared.signature`,
    variables frozen into constants, channel constants flattened, the exact gelu
    rewritten to the form TFLite converts to its builtin `GELU`."""
    import tensorflow as tf
    from tensorflow.core.framework.types_pb2 import DataType
    from tensorflow.lite.python.util import get_tensor_name
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = prepared.model
    function = tf.function(lambda *args: model(*args, training=False)).get_concrete_function(*prepared.signature)
    frozen = convert_variables_to_constants_v2(function, lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()

    def shape_of(ref):
        name, _, index = ref.partition(":")
        return frozen.graph.get_operation_by_name(name).outputs[int(index or 0)].shape

    flatten_channel_constants(graph_def, shape_of)
    rewrite_exact_gelu(graph_def)
    inputs = [t for t in frozen.inputs if t.dtype != tf.resource]
    return FrozenGraph(
        graph_def.SerializeToString(),
        [get_tensor_name(t) for t in inputs],
        [DataType.Name(t.dtype.as_datatype_enum) for t in inputs],
        [[1] + t.shape.as_list()[1:] for t in inputs],
        [get_tensor_name(t) for t in frozen.outputs],
        model.name,
    )
