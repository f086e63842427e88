"""Run by tests/test_optimizers.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import numpy as np
import keras
import biper_keras as bk
from biper_keras.optimizers import Bop, CaseOptimizer

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
teacher = np.where(rng.normal(size=(16, 1)) >= 0, 1.0, -1.0).astype("float32")
x = rng.normal(size=(256, 16)).astype("float32")
y = x @ teacher + 0.5
layer = bk.QuantDense(1, kernel_quantizer=bk.NoOp(precision=1), name="binary")
model = keras.Sequential([keras.Input((16,)), layer])
optimizer = CaseOptimizer((Bop.is_binary_variable, Bop(threshold=1e-4, gamma=0.1)),
                          default_optimizer=keras.optimizers.Adam(0.05))
model.compile(optimizer, "mse")
before = model.evaluate(x, y, verbose=0)
model.fit(x, y, batch_size=32, epochs=15, verbose=0)
after = model.evaluate(x, y, verbose=0)
kernel = keras.ops.convert_to_numpy(layer._kernel)
assert set(np.unique(kernel)) <= {-1.0, 1.0}, kernel
agreement = float(np.mean(kernel == teacher))
bias = float(keras.ops.convert_to_numpy(layer.bias)[0])
assert agreement == 1.0 and after < 0.05 * before and abs(bias - 0.5) < 0.1, (agreement, before, after, bias)
print("FIT-OK", keras.backend.backend(), before, after, bias)
