"""Runs `biper_keras.convert._tflite_child` with a converter that dies or fails the way
LCE's converter does on some models (used by tests/test_convert_crash.py).

    python crashing_tflite_converter.py CHILD_PATH {abort,segv,raise}
"""

import importlib.util
import os
import signal
import sys

child_path, how = sys.argv[1:3]
spec = importlib.util.spec_from_file_location("tflite_child", child_path)
child = importlib.util.module_from_spec(spec)
spec.loader.exec_module(child)


def crash(*args):
    if how == "abort":  # an uncaught C++ exception: std::terminate, then abort
        sys.stderr.write("terminate called after throwing an instance of 'std::length_error'\n"
                         "  what():  cannot create std::vector larger than max_size()\n")
        sys.stderr.flush()
        os.abort()
    if how == "segv":  # LLVM's crash banner, then the signal
        sys.stderr.write("error: 'tfl.conv_2d' op something went wrong in a pass\n"
                         "PLEASE submit a bug report to https://github.com/llvm/llvm-project/issues/\n"
                         "Stack dump:\n0.\tProgram arguments: python\n"
                         " #0 0x00007f3a1b2c3d4e llvm::sys::PrintStackTrace(llvm::raw_ostream&, int)\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    raise RuntimeError("<unknown>:0: error: loc(\"gelu/Erf\"): 'tf.Erf' op is neither a custom op nor a flex op")


child.load_converter = lambda: crash
sys.exit(child.main())
