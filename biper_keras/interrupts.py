"""Ctrl-C and SIGTERM for long commands: the signal stops the run at once, and stays
stopped even where Python drops the exception."""

__all__ = []  # internal (the CLI's and train()'s machinery): no public API

import signal


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised like Ctrl-C so that training stops the same way (the
    checkpoints are atomic, so stopping anywhere loses at most the current epoch)."""

    def __init__(self, signum):
        super().__init__()
        self.signum = signum


# Signals received since `install`. The handler raises, but an exception raised while a
# garbage-collection callback runs (TensorFlow's _xla_gc_callback) is printed and
# dropped by Python: the record makes the interrupt stick. `stop_on_signal` raises it
# again at the next batch, and the CLI reports it even if the command then returned.
received = []


def on_signal(signum, frame):
    received.append(signum)
    raise Interrupted(signum)


def install():
    """Routes SIGINT and SIGTERM to `on_signal` (main thread only); returns the previous
    handlers, for `restore`."""
    del received[:]
    return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}


def restore(previous):
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def stop_on_signal():
    """A Keras callback raising the pending interrupt at every batch and epoch boundary.

    It hooks the *begin* of batches only: a callback with a batch-*end* hook makes Keras
    give up asynchronous callback dispatch (JAX) and wait for every step's logs on the
    host, a sync per step; the next batch's begin is the same boundary."""
    import keras

    class StopOnSignal(keras.callbacks.Callback):
        def _check(self, *args, **kwargs):
            if received:
                raise Interrupted(received[-1])

        on_train_batch_begin = on_test_batch_begin = _check
        on_epoch_begin = on_epoch_end = on_train_begin = on_train_end = on_test_begin = on_test_end = _check

    return StopOnSignal()
