"""Metrics specific to binary networks (Larq's `larq.metrics`), for Keras 3.

`FlipRatio` tracks how many entries of a tensor changed between two updates. A
quantizer built with `metrics=["flip_ratio"]` owns one and feeds it its quantized
output on every call, so the fraction of binary weights whose sign flipped in the last
step shows in `model.fit`'s logs as `flip_ratio/<quantizer name>` (Keras 3 collects
the metrics of sub-layers, as Larq's `add_metric` did).
"""

import keras
import numpy as np
from keras import ops

__all__ = ["FlipRatio", "flip_ratio"]


@keras.saving.register_keras_serializable(package="biper_keras")
class FlipRatio(keras.metrics.Metric):
    """Mean fraction of entries of a tensor that changed since the previous update.

    The first update only records the values; each later one adds
    `1 - (unchanged entries) / size` to the running mean (Larq's rule):

        m = FlipRatio()
        m.update_state((1, 1)); m.update_state((2, 2)); m.update_state((1, 2))
        m.result()  # 0.75

    The tensor's shape is fixed by the first update (or `build(shape)`).

    Args:
        values_dtype: dtype the tracked values are stored in (Larq: "int8", enough
            for binary and ternary values).
        name, dtype: as for any Keras metric.
    """

    def __init__(self, values_dtype="int8", name="flip_ratio", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.values_dtype = keras.backend.standardize_dtype(values_dtype)
        self._previous_values = None
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def build(self, shape):
        shape = tuple(int(d) for d in shape)
        self._previous_values = self.add_variable(
            shape=shape, initializer="zeros", dtype=self.values_dtype, name="previous_values"
        )
        self._size = float(np.prod(shape))

    def update_state(self, values, sample_weight=None):
        values = ops.cast(values, self.values_dtype)
        if self._previous_values is None:
            self.build(values.shape)
        unchanged = ops.sum(ops.cast(ops.equal(self._previous_values, values), self.dtype))
        ratio = 1.0 - unchanged / self._size
        # The first update has nothing to compare with: sign(count) = 0 drops it.
        self.total.assign_add(ratio * ops.sign(self.count))
        self.count.assign_add(ops.cast(1, self.dtype))
        self._previous_values.assign(values)

    def result(self):
        steps = self.count - 1.0
        return ops.where(steps > 0, self.total / ops.maximum(steps, 1.0), 0.0)

    def reset_state(self):
        # The previous values stay: the next update still compares with the last step.
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "values_dtype": self.values_dtype}


flip_ratio = FlipRatio
