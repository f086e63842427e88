"""Run by tests/test_larq_parity.py in a shared test process (tests/shared_processes.py);
sys.argv[1] is the session's shared folder."""
import sys
import numpy as np
from biper_keras import quantizers
from backend_suite.autodiff import value_and_vjp
from larq_parity_cases import mismatches

found = mismatches(dict(np.load(sys.argv[1] + "/reference.npz")), value_and_vjp, quantizers)
print("\n".join(found) if found else "PARITY-OK")
