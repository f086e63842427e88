"""The graph that LCE converts: a Keras 3 model's inference function, frozen, with every
per-channel constant of an element-wise op given as a 1-D tensor (TensorFlow only,
imported lazily by `biper_keras.convert`).

Why: Keras 3 reshapes per-channel constants to the input's rank whenever the channel axis
is given as a positive number. `BatchNormalization(axis=3)` (every `keras.applications`
model, and every model brought over from tf_keras/Larq) multiplies and adds (1, 1, 1, C)
constants; so does a `Rescaling` with per-channel arrays or a layer holding a (1, 1, 1, C)
weight. LCE 0.16 folds such a constant into the `LceBconv2d` before it unchanged, and
its kernel then refuses to prepare ("NumDimensions(post_activation_multiplier) != 1").
Against a tensor of rank >= the constant's, a (C,) constant broadcasts to exactly the
same values, so each such operand is reshaped to (C,) before conversion.
"""

import collections

_ELEMENTWISE = {"Mul", "Add", "AddV2", "Sub", "RealDiv", "Div"}


def input_signature(model):
    """`tf.TensorSpec`s for `model`'s call, batch size None (as `model.export` uses)."""
    import tensorflow as tf
    from biper_keras._compat import input_signature as get_input_signature

    return tf.nest.map_structure(lambda s: tf.TensorSpec(s.shape, s.dtype), get_input_signature(model))


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


def to_flatbuffer(model, target):
    """`model` (Keras 3, TF backend) as an LCE flatbuffer: `model(x, training=False)`
    traced and frozen, channel constants flattened, LCE's graph converter. Input sizes
    other than the batch must be known (LCE's converter would make them 1)."""
    import tensorflow as tf
    from biper_keras._compat import convert_graphdef_to_tflite_flatbuffer
    from tensorflow.core.framework.types_pb2 import DataType
    from tensorflow.lite.python.util import get_tensor_name
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    signature = input_signature(model)
    function = tf.function(lambda *args: model(*args, training=False)).get_concrete_function(*signature)
    frozen = convert_variables_to_constants_v2(function, lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()

    def shape_of(ref):
        name, _, index = ref.partition(":")
        return frozen.graph.get_operation_by_name(name).outputs[int(index or 0)].shape

    flatten_channel_constants(graph_def, shape_of)
    inputs = [t for t in frozen.inputs if t.dtype != tf.resource]
    # Batch size 1, as LCE's own converter sets it (its interpreter runs sample by sample).
    shapes = [[1] + t.shape.as_list()[1:] for t in inputs]
    return convert_graphdef_to_tflite_flatbuffer(
        graph_def.SerializeToString(),
        [get_tensor_name(t) for t in inputs],
        [DataType.Name(t.dtype.as_datatype_enum) for t in inputs],
        shapes,
        [get_tensor_name(t) for t in frozen.outputs],
        False,  # no int8 quantization
        target,
        None,
    )
