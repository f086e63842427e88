"""Run by tests/test_larq_parity_layers.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import sys
import numpy as np
from biper_keras import layers
from backend_suite.autodiff import value_and_vjp
from larq_parity_cases import layer_mismatches

found = layer_mismatches(dict(np.load(sys.argv[1] + "/layers.npz")), layers, value_and_vjp)
print("\n".join(found) if found else "LAYERS-OK")
