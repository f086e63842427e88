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
