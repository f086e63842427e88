"""Training-step time of ResNet-20 (CIFAR, 32x32) with BiPer layers vs its float twin,
per Keras backend, variants interleaved in one process per backend.

    python benchmarks/step_time.py                       # TF, JAX, torch; batch 128
    python benchmarks/step_time.py --quick               # a smoke run
    python benchmarks/step_time.py --backends tensorflow --rounds 5 --out results.json

Prints a Markdown table of median ms/step and the BiPer/float ratio; `--out` also
writes the raw numbers as JSON. Timings on shared machines are noisy: compare the
ratios, which are measured in the same process, rather than absolute times.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(backend, batch, rounds, steps, warmup):
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    from biper_keras.models import get_model

    assert keras.backend.backend() == backend
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch)
    variants = {
        "biper": get_model("resnet20"),
        "float": get_model("resnet20", kernel_quantizer=None, input_quantizer=None),
    }
    for model in variants.values():
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        for _ in range(warmup):
            model.train_on_batch(x, y)
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, model in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return {name: statistics.median(t) for name, t in times.items()} | {"raw_ms": times}


def larq_worker(batch, rounds, steps, warmup):
    """Larq's QuantConv2D(ste_sign) ResNet-20 on tf_keras, the same topology as ours,
    timed with a tf.function train step (tf_keras train_on_batch stalls on a fresh
    iterator every call)."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import larq as lq
    import numpy as np
    import tensorflow as tf

    k = tf.keras
    binary = dict(padding="same", pad_values=1.0, use_bias=False, input_quantizer="ste_sign",
                  kernel_quantizer="ste_sign", kernel_constraint="weight_clip")

    def hard_tanh(x):
        return k.layers.Lambda(lambda v: tf.clip_by_value(v, -1.0, 1.0))(x)

    inputs = k.Input((32, 32, 3))
    x = k.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = hard_tanh(k.layers.BatchNormalization(momentum=0.9)(x))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            for conv in range(2):
                strides = 2 if stage > 0 and block == 0 and conv == 0 else 1
                y = k.layers.BatchNormalization(momentum=0.9)(lq.layers.QuantConv2D(filters, 3, strides=strides, **binary)(x))
                shortcut = x
                if strides == 2:
                    pad = (filters - x.shape[-1]) // 2
                    shortcut = k.layers.AveragePooling2D(2)(x)
                    shortcut = k.layers.Lambda(lambda v, p=pad: tf.pad(v, [[0, 0], [0, 0], [0, 0], [p, p]]))(shortcut)
                x = hard_tanh(k.layers.Add()([y, shortcut]))
    outputs = k.layers.Dense(10)(k.layers.GlobalAveragePooling2D()(x))
    model = k.Model(inputs, outputs)
    optimizer = k.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = k.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(0)
    x_batch = tf.constant(rng.normal(size=(batch, 32, 32, 3)).astype("float32"))
    y_batch = tf.constant(rng.integers(0, 10, size=batch))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y_batch, model(x_batch, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        return loss

    for _ in range(warmup):
        step().numpy()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        loss.numpy()
        times.append((time.perf_counter() - start) / steps * 1e3)
    return {"larq_ste_sign": statistics.median(times), "raw_ms": {"larq_ste_sign": times}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--no-larq", action="store_true", help="skip Larq's tf_keras ResNet-20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="batch 16, 1 round of 2 steps")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.rounds, args.steps, args.warmup = 16, 1, 2, 1
    if args.worker == "larq":
        print(json.dumps(larq_worker(args.batch, args.rounds, args.steps, args.warmup)))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.rounds, args.steps, args.warmup)))
        return

    results = {}
    workers = args.backends.split(",")
    if not args.no_larq and "tensorflow" in workers:
        workers.insert(workers.index("tensorflow") + 1, "larq")
    for backend in workers:
        cmd = [sys.executable, __file__, "--worker", backend, "--batch", str(args.batch),
               "--rounds", str(args.rounds), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_USE_LEGACY_KERAS", None)
        if backend == "larq":
            env["TF_USE_LEGACY_KERAS"] = "1"
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: the {backend} run failed:\n{done.stderr[-2000:]}")
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{backend}: done", file=sys.stderr)

    print(f"ResNet-20, batch {args.batch}, median of {args.rounds} rounds x {args.steps} steps\n")
    print("| backend | BiPer ms/step | float ms/step | BiPer / float |")
    print("|---|---|---|---|")
    for backend, r in results.items():
        if backend != "larq":
            print(f"| {backend} | {r['biper']:.0f} | {r['float']:.0f} | {r['biper'] / r['float']:.2f} |")
    if "larq" in results:
        larq = results["larq"]["larq_ste_sign"]
        ours = results["tensorflow"]["biper"]
        print(f"\nLarq QuantConv2D(ste_sign) ResNet-20 on tf_keras: {larq:.0f} ms/step; "
              f"our BiPer on TensorFlow / Larq = {ours / larq:.2f}")
    if args.out:
        meta = {"batch": args.batch, "rounds": args.rounds, "steps": args.steps,
                "date": time.strftime("%Y-%m-%d")}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
