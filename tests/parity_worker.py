"""Run by tests/test_fidelity.py in a subprocess (KERAS_BACKEND set, float64): the
package's ResNet-20 in its parity configuration against tests/authors_reference.py,
forward layer by layer, then a few SGD steps of the recipe (training.make_optimizer)
on fixed batches. Prints one JSON line of the largest differences."""

import dataclasses
import json
import sys
import types

import keras
import numpy as np
import torch

from authors_reference import AuthorsResNet20, training_step
from helpers import randomize_batch_norms
from biper_keras.models.resnet import AUTHORS_OPTIONS
from biper_keras.training import Recipe, Stage, compile_stage, build_model

keras.config.set_floatx("float64")
keras.config.set_dtype_policy("float64")  # the torch backend casts layer inputs to the policy
STEPS_PER_EPOCH, BATCH, SIZE = 3, 8, 8


def keras_activations(model, x, training):
    names = [l.name for l in model.layers if l.name.endswith("_act")]
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.outputs[0]])
    outs = [np.asarray(keras.ops.convert_to_numpy(o)) for o in probe([x], training=training)]
    return dict(zip(names + ["logits"], outs))


def torch_activations(reference, x, training):
    reference.train(training)
    with torch.no_grad():
        logits, seen = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return {**{k: v.numpy() for k, v in seen.items()}, "logits": logits.numpy()}


def layer_diffs(a, b):
    return {k: float(np.abs(a[k] - b[k]).max()) for k in a}


def run_stage(recipe, stage, rng, batches):
    data = types.SimpleNamespace(image_shape=(SIZE, SIZE, 3), num_classes=10)
    model = build_model(recipe, stage, data)
    randomize_batch_norms(model, rng)  # so that eps and the affine parts matter
    settings = recipe.stage1 if stage == 1 else recipe.stage2
    start = model.get_weights()
    result = {}
    x0 = batches[0][0]
    for training in (True, False):
        reference = AuthorsResNet20(model, recipe.omega, binarize=stage == 2)
        diffs = layer_diffs(keras_activations(model, x0, training), torch_activations(reference, x0, training))
        result["forward_train" if training else "forward_inference"] = diffs
        model.set_weights(start)  # the probe's training-mode call moved the BN statistics

    # Keras's SAME padding (0, 1) at stride 2 instead: where the two first part.
    asymmetric = build_model(
        dataclasses.replace(recipe, model_options={**recipe.model_options, "symmetric_padding": False}),
        stage, data)
    asymmetric.set_weights(start)
    reference = AuthorsResNet20(model, recipe.omega, binarize=stage == 2)
    diffs = layer_diffs(keras_activations(asymmetric, x0, False), torch_activations(reference, x0, False))
    result["asymmetric_first_divergence"] = next(k for k, v in diffs.items() if v > 1e-6)

    compile_stage(model, recipe, stage, STEPS_PER_EPOCH)
    schedule = model.optimizer._learning_rate
    reference = AuthorsResNet20(model, recipe.omega, binarize=stage == 2)
    torch_opt = torch.optim.SGD(reference.parameters(), lr=0.0, momentum=recipe.momentum,
                                weight_decay=settings.weight_decay)
    losses, lrs = [], []
    for k, (x, y) in enumerate(batches):
        lr = float(keras.ops.convert_to_numpy(schedule(k)))
        ours = float(np.asarray(model.train_on_batch(x, y)[0]))
        theirs = training_step(reference, torch_opt, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                               torch.from_numpy(y), settings.tau, lr)
        losses.append((ours, theirs))
        lrs.append(lr)
    weights, moved = {}, {}
    for layer_name, var_name, tensor in reference.keras_named_parameters():
        layer = model.get_layer(layer_name)
        variable = next(v for v in layer.variables if v.name == var_name)
        theirs = tensor.detach().numpy()
        ours = np.asarray(keras.ops.convert_to_numpy(variable))
        weights[f"{layer_name}/{var_name}"] = float(np.abs(ours - theirs).max())
        before = start[[id(v) for v in model.weights].index(id(variable))]
        moved[f"{layer_name}/{var_name}"] = float(np.abs(ours - before).max())
    result.update(losses=losses, lrs=lrs, weights=weights, moved=moved,
                  dtype=str(keras.ops.convert_to_numpy(model.weights[0]).dtype))
    return result


def main():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    recipe = Recipe(stage1=Stage(2, 0.01, 5e-3, 0.037), stage2=Stage(2, 0.004, 5e-3, 0.0468), batch_size=BATCH,
                    warmup_epochs=1, model_options=dict(AUTHORS_OPTIONS))
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2 * STEPS_PER_EPOCH
    batches = [(rng.normal(size=(BATCH, SIZE, SIZE, 3)), rng.integers(0, 10, size=BATCH)) for _ in range(steps)]
    print(json.dumps({f"stage{s}": run_stage(recipe, s, rng, batches) for s in (1, 2)}))


if __name__ == "__main__":
    sys.exit(main())
