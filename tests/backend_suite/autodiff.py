"""Value and vector-Jacobian product of a function, on whichever backend is active."""

import keras
import numpy as np


def value_and_vjp(fn, x, upstream):
    """Returns (fn(x), upstream . d fn / dx) as numpy arrays."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y.numpy(), tape.gradient(y, x, output_gradients=tf.constant(upstream)).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        y, vjp = jax.vjp(fn, jnp.asarray(x))
        (grad,) = vjp(jnp.asarray(upstream))
        return np.asarray(y), np.asarray(grad)
    if backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        y = fn(xt)
        y.backward(torch.tensor(upstream))
        return y.detach().cpu().numpy(), xt.grad.cpu().numpy()
    raise AssertionError(f"unexpected backend {backend}")


def layer_value_and_grads(layer, x, upstream, xla=False):
    """Returns (layer(x, training=True), dL/dx, [dL/dv for v in layer.trainable_variables])
    as numpy arrays, for L = sum(layer(x) * upstream); on TensorFlow with `xla`, the
    whole computation compiled by XLA (as `compile(jit_compile=True)` trains)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def value_and_grads(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * upstream)
            return y, tape.gradient(loss, [x, *layer.trainable_variables])

        if xla:
            value_and_grads = tf.function(value_and_grads, jit_compile=True)
        y, grads = value_and_grads(tf.convert_to_tensor(x))
        return y.numpy(), grads[0].numpy(), [g.numpy() for g in grads[1:]]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def loss(trainable, x):
            y, _ = layer.stateless_call(trainable, [v.value for v in layer.non_trainable_variables], x, training=True)
            return jnp.sum(y * upstream), y

        (_, y), (g_vars, g_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            [v.value for v in layer.trainable_variables], jnp.asarray(x))
        return np.asarray(y), np.asarray(g_x), [np.asarray(g) for g in g_vars]
    if backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        y = layer(xt, training=True)
        (y * torch.tensor(upstream)).sum().backward()
        return (y.detach().cpu().numpy(), xt.grad.cpu().numpy(),
                [v.value.grad.cpu().numpy() for v in layer.trainable_variables])
    raise AssertionError(f"unexpected backend {backend}")
