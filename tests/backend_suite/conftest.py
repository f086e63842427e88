"""Tests collected only by tests/test_backends.py, once per backend, in a subprocess
whose KERAS_BACKEND is set before Keras is imported (see suite_*.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))
