"""What a training run is about to cost: the plan printed at its start, and an ETA once
the first epoch has been timed (a full paper run is hundreds of CPU hours: say so before
the user waits)."""

__all__ = []  # internal (the CLI's and train()'s machinery): no public API

import datetime
import time

import keras


def stages_text(epochs_by_stage):
    return ", ".join(f"stage {s} {n} epoch{'s' * (n != 1)}" for s, n in epochs_by_stage)


def plan_text(epochs_by_stage, steps_per_epoch, batch_size, train_size):
    """One line: the epochs of each stage, the steps per epoch and the steps in all."""
    stages = stages_text(epochs_by_stage)
    total = sum(n for _, n in epochs_by_stage) * steps_per_epoch
    return (f"plan: {stages}; {steps_per_epoch:,} steps per epoch ({train_size:,} images, batch "
            f"{batch_size}), {total:,} steps in all; time estimate after the first epoch")


def duration_text(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Eta(keras.callbacks.Callback):
    """Prints, after the first epoch it sees, that epoch's time and the estimated time and
    clock time at which the run ends (`epochs_after` = epochs of the later stages, assumed
    to cost as much; the first epoch includes compilation, so the estimate errs long)."""

    def __init__(self, stage, epochs, epochs_after=0, print_fn=print):
        super().__init__()
        self.stage, self.epochs, self.epochs_after, self.print_fn = stage, epochs, epochs_after, print_fn
        self._start = self._done = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._start is None:
            self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._done is not None:
            return
        self._done = time.perf_counter() - self._start
        left = self.epochs - (epoch + 1) + self.epochs_after
        took = f"stage {self.stage} epoch {epoch + 1}/{self.epochs} took {duration_text(self._done)}"
        if not left:
            self.print_fn(f"{took}: the last epoch of the run")
            return
        end = datetime.datetime.now() + datetime.timedelta(seconds=self._done * left)
        self.print_fn(f"{took}: about {duration_text(self._done * left)} for the {left} epoch{'s' * (left != 1)} "
                      f"left (ETA {end:%Y-%m-%d %H:%M})")
