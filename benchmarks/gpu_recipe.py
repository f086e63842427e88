"""The two-stage BiPer recipe on one accelerator, with the data kept on the device
(`biper_keras.device_data`): step time, epoch time with evaluation, total wall clock, test
top-1 per stage, and the step's FLOP count against the device's peak.

    python benchmarks/gpu_recipe.py                         # the paper's 600 + 300 epochs, batch 256, JAX
    python benchmarks/gpu_recipe.py --epochs 40,20          # a shorter run
    python benchmarks/gpu_recipe.py --data ../shared/datasets/cifar10.bin   # the two-file copy
    python benchmarks/gpu_recipe.py --quick                 # the packaged sample, 1 + 1 epochs (CPU smoke run)
    python benchmarks/gpu_recipe.py --model NAME            # another registered model (default resnet20)

A stopped run continues where it stopped (rerun the same command). Writes `<out>.json` and
`<out>.md`. Runs on a CPU too, slowly; TensorFlow need not be installed.
"""

import argparse
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402

# Dense tensor-core peaks (TFLOP/s) from the vendors' data sheets: (TF32, BF16).
PEAKS = {"H100": (494.0, 989.0), "H200": (494.0, 989.0), "A100": (156.0, 312.0), "L4": (60.0, 121.0)}
PAPER_STAGE2_TOP1 = 0.8698  # ResNet-20 BiPer, 600 + 300 epochs


def device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return device.device_kind if device.platform != "cpu" else f"CPU ({platform.processor() or 'x86-64'})"
    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor()})"
    return f"CPU ({platform.processor()})"


def peak(name):
    return next((p for key, p in PEAKS.items() if key in name), None)


def training_flops(model, batch):
    """Multiply-adds of the forward pass x 2 (FLOPs) x 3 (forward + two backward products),
    counted at float precision: in training every binary conv runs as a float conv."""
    from biper_keras.summary import summary

    stats = summary(model, print_fn=None)
    macs = stats.total("macs_1bit") + stats.total("macs_32bit")
    return macs, 2 * 3 * macs * batch


class EpochTimes:
    """Keras callback: wall seconds of each epoch, training and evaluation (checkpoint
    writes, which happen after the other epoch-end callbacks, are not in it)."""

    def __new__(cls):
        import keras

        class _Times(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        return _Times()


def step_seconds(recipe, data, steps):
    """Seconds per training step of the stage-2 model, from the second of two epochs of
    `steps` steps (the first one compiles)."""
    from biper_keras import training

    with training.dtype_policy(recipe.precision):
        model = training.build_model(recipe, 2, data)
        training.compile_stage(model, recipe, 2, steps)  # as train() compiles it
    times = EpochTimes()
    model.fit(data.train, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[times])
    return times.seconds[-1] / steps, model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(_common.CIFAR_FOLDER), help="image folder or cifar10.bin")
    parser.add_argument("--epochs", default="600,300", help="stage 1,stage 2")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model", default="resnet20",
                        help="a registered model name (biper_keras.models.available_models; Recipe.model)")
    parser.add_argument("--backend", default="jax", choices=("jax", "torch", "tensorflow"))
    parser.add_argument("--limit", type=int, default=0, help="first N images of each split (0: all)")
    parser.add_argument("--timing-steps", type=int, default=50)
    parser.add_argument("--steps-per-execution", type=int, default=1, help="Recipe.steps_per_execution")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--sweep-step", action="store_true",
                        help="first time the step for steps_per_execution 1 and 8 x float32 and mixed_bfloat16")
    parser.add_argument("--runs", default=str(_common.REPO / "runs" / "gpu_recipe"))
    parser.add_argument("--out", default=str(_common.RESULTS / "gpu_recipe"))
    parser.add_argument("--quick", action="store_true", help="packaged sample, 1+1 epochs, batch 50")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.epochs, args.batch_size, args.limit, args.timing_steps = str(_common.SAMPLE), "1,1", 50, 100, 2
        # Smoke results go beside the real ones unless the caller chose the places.
        if args.runs == parser.get_default("runs"):
            args.runs += "-quick"
        if args.out == parser.get_default("out"):
            args.out += "-quick"
    _common.require_data(args.data)
    os.environ["KERAS_BACKEND"] = args.backend
    import dataclasses

    from biper_keras import device_data, training
    from biper_keras.models import available_models

    if args.model not in available_models():
        raise SystemExit(f"error: unknown model {args.model!r} (--model); known: {', '.join(available_models())}")
    epochs = [int(v) for v in args.epochs.split(",")]
    if len(epochs) != 2 or min(epochs) < 1:
        parser.error(f"--epochs takes two positive integers (stage 1,stage 2), got {args.epochs!r}")
    defaults = training.Recipe()
    recipe = dataclasses.replace(defaults, model=args.model, batch_size=args.batch_size, precision=args.precision,
                                 steps_per_execution=args.steps_per_execution,
                                 stage1=dataclasses.replace(defaults.stage1, epochs=epochs[0]),
                                 stage2=dataclasses.replace(defaults.stage2, epochs=epochs[1]))
    start = time.perf_counter()
    data = device_data.device_datasets(args.data, batch_size=args.batch_size, limit_per_split=args.limit or None)
    load_seconds = time.perf_counter() - start
    steps = min(args.timing_steps, len(data.train))
    timed = {}

    def timed_step(precision, per_call):  # (seconds, model); each setting compiled and timed once
        if (precision, per_call) not in timed:
            variant = dataclasses.replace(recipe, precision=precision, steps_per_execution=per_call)
            timed[precision, per_call] = step_seconds(variant, data, steps)
        return timed[precision, per_call]

    sweep = []
    settings = [(p, n) for p in ("float32", "mixed_bfloat16") for n in (1, 8)]
    if args.quick:  # a smoke run: two of the four (each compiles a step; minutes on a CPU)
        settings = [("float32", 1), ("mixed_bfloat16", 8)]
    if args.sweep_step:
        for precision, per_call in settings:
            seconds = timed_step(precision, per_call)[0]
            sweep.append({"precision": precision, "steps_per_execution": per_call, "step_ms": 1e3 * seconds})
            print(f"step sweep: {precision}, steps_per_execution {per_call}: {1e3 * seconds:.2f} ms", flush=True)
    step, model = timed_step(recipe.precision, recipe.steps_per_execution)
    macs, flops = training_flops(model, args.batch_size)
    del model
    timed.clear()  # the compiled models
    times = EpochTimes()
    folder = pathlib.Path(args.runs)
    resume = folder.exists() and any(folder.iterdir())
    start = time.perf_counter()
    summary = training.train(recipe, data, folder, resume=resume, verbose=2, callbacks=[times])
    wall = time.perf_counter() - start
    name = device_name()
    tf32_bf16 = peak(name)
    result = {
        "device": name, "backend": args.backend, "model": recipe.model, "data": args.data, "epochs": epochs,
        "batch_size": args.batch_size,
        "precision": recipe.precision, "steps_per_execution": recipe.steps_per_execution, "step_sweep": sweep,
        "train_images": data.train_size, "test_images": data.test_size, "load_seconds": load_seconds,
        "step_ms": 1e3 * step, "epoch_seconds_median": sorted(times.seconds)[len(times.seconds) // 2] if times.seconds else None,
        "epochs_timed": len(times.seconds), "wall_seconds": wall, "resumed": resume,
        "macs_per_image": macs, "flops_per_step": flops,
        "step_ms_at_peak": {"tf32": flops / (tf32_bf16[0] * 1e12) * 1e3, "bf16": flops / (tf32_bf16[1] * 1e12) * 1e3}
        if tf32_bf16 else None,
        "stage1_top1": summary.get("stage1", {}).get("test_accuracy"),
        "stage2_top1": summary.get("stage2", {}).get("test_accuracy"),
        "paper_stage2_top1": PAPER_STAGE2_TOP1 if recipe.model == "resnet20" else None,  # the paper's is ResNet-20's
    }
    limit = (f"{result['step_ms_at_peak']['tf32']:.3f} / {result['step_ms_at_peak']['bf16']:.3f}"
             if tf32_bf16 else "n/a")
    table = "\n".join([
        f"{'ResNet-20' if recipe.model == 'resnet20' else recipe.model} BiPer, CIFAR-10 ({data.train_size} train / "
        f"{data.test_size} test images), epochs "
        f"{epochs[0]} + {epochs[1]}, batch {args.batch_size}, {args.backend} on {name}, {recipe.precision}, "
        f"steps_per_execution {recipe.steps_per_execution}",
        "",
        "| step (ms) | limit at TF32 / BF16 peak (ms) | epoch with eval (s) | wall clock (min) | "
        "stage 1 top-1 | stage 2 top-1 | paper (600+300) |",
        "|---|---|---|---|---|---|---|",
        f"| {result['step_ms']:.2f} | {limit} | "
        f"{result['epoch_seconds_median'] or float('nan'):.2f} | {wall / 60:.1f} | "
        f"{result['stage1_top1'] or float('nan'):.4f} | {result['stage2_top1'] or float('nan'):.4f} | "
        f"{result['paper_stage2_top1'] or 'n/a'} |",
        "",
        f"{macs / 1e6:.1f} M multiply-adds per image forward; {flops / 1e9:.1f} GFLOP per training step.",
        *([""] + [f"step sweep: {s['precision']}, steps_per_execution {s['steps_per_execution']}: "
                  f"{s['step_ms']:.2f} ms" for s in sweep] if sweep else []),
    ])
    _common.write_results(args.out, {"result": result}, table)
    print(table)


if __name__ == "__main__":
    main()
