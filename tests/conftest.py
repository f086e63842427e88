import os
import sys
import pathlib

# The in-process tests run on TensorFlow (conversion needs it); the other backends are
# exercised by tests/test_backends.py in subprocesses.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).parent))
