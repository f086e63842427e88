"""A plain PyTorch re-implementation of the BiPer authors' CIFAR ResNet-20 and of their
training step (read from their public code, written here in our own words), for the
parity test. Layers are loaded from a Keras `resnet20` by name, so both start from the
same weights.

What it reproduces: BatchNorm with PyTorch's eps 1e-5 and momentum 0.1 (unbiased
running variance); the binary conv divides each sample's input by
sqrt(unbiased var over C,H,W + 1e-5) in training only, binarizes it with sign
(backward max(0, 2 - 2|a|)), uses sin(omega*w) weights (stage 1) or sign(sin(omega*w))
with the gradient passed straight through the sign (stage 2), zero padding 1 on both
sides, and multiplies the output by a per-channel alpha; the loss adds
tau * mean(0.5 - 0.5*cos(2*omega*w)) per binary conv; SGD is torch.optim.SGD with
coupled weight decay.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _SignWithBiRealGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return torch.sign(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * (2.0 - 2.0 * a.abs()).clamp(min=0.0)


class BinaryConv(nn.Module):
    def __init__(self, kernel, alpha, stride, omega, binarize):
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(np.transpose(kernel, (3, 2, 0, 1)).copy()))
        self.alpha = nn.Parameter(torch.from_numpy(alpha.reshape(-1, 1, 1).copy()))
        self.stride, self.omega, self.binarize = stride, omega, binarize

    def forward(self, a):
        if self.training:
            a = a / torch.sqrt(a.var(dim=(1, 2, 3), keepdim=True) + 1e-5)
        w = torch.sin(self.omega * self.weight)
        if self.binarize:
            w = w + (torch.sign(w) - w).detach()  # straight through the sign
        out = F.conv2d(_SignWithBiRealGradient.apply(a), w, None, self.stride, 1)
        return out * self.alpha

    def sin_squared(self):
        return torch.mean(0.5 - 0.5 * torch.cos(2 * self.omega * self.weight))


def _batch_norm(layer, dims):
    bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(layer.gamma.shape[0], eps=1e-5, momentum=0.1)
    bn = bn.double()
    with torch.no_grad():
        for name, var in (("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.moving_mean),
                          ("running_var", layer.moving_variance)):
            getattr(bn, name).copy_(torch.from_numpy(np.asarray(var, dtype="float64")))
    return bn


class AuthorsResNet20(nn.Module):
    """Built from the Keras model's layers (names as in biper_keras.models.resnet20)."""

    def __init__(self, keras_model, omega, binarize):
        super().__init__()
        get = keras_model.get_layer
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False).double()
        with torch.no_grad():
            self.stem.weight.copy_(torch.from_numpy(np.transpose(np.asarray(get("stem_conv").kernel), (3, 2, 0, 1))))
        self.stem_bn = _batch_norm(get("stem_bn"), 2)
        self.tags, self.convs, self.bns = [], nn.ModuleList(), nn.ModuleList()
        for stage in range(3):
            for block in range(3):
                for conv in range(2):
                    tag = f"s{stage}b{block}c{conv}"
                    layer = get(f"{tag}_conv")
                    stride = 2 if stage > 0 and block == 0 and conv == 0 else 1
                    self.tags.append((tag, stride))
                    self.convs.append(BinaryConv(np.asarray(layer._kernel), np.asarray(layer.alpha), stride, omega,
                                                 binarize))
                    self.bns.append(_batch_norm(get(f"{tag}_bn"), 2))
        self.head_bn = _batch_norm(get("head_bn"), 1)
        dense = get("classifier")
        self.linear = nn.Linear(64, dense.units).double()
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(np.asarray(dense.kernel).T))
            self.linear.bias.copy_(torch.from_numpy(np.asarray(dense.bias)))

    def forward(self, x):
        """Logits and the activations after every hard tanh (NHWC, like Keras)."""
        x = F.hardtanh(self.stem_bn(self.stem(x)))
        seen = {"stem_act": x}
        for (tag, stride), conv, bn in zip(self.tags, self.convs, self.bns):
            shortcut = x
            if stride == 2:
                pad = (conv.weight.shape[0] - x.shape[1]) // 2
                shortcut = F.pad(F.avg_pool2d(x, 2), (0, 0, 0, 0, pad, pad))
            x = F.hardtanh(bn(conv(x)) + shortcut)
            seen[f"{tag}_act"] = x
        logits = self.linear(self.head_bn(F.avg_pool2d(x, x.shape[3]).flatten(1)))
        seen = {k: v.permute(0, 2, 3, 1) for k, v in seen.items()}
        return logits, seen

    def keras_named_parameters(self):
        """(Keras layer name, Keras variable name, torch tensor in Keras layout)."""
        out = [("stem_conv", "kernel", self.stem.weight.permute(2, 3, 1, 0))]
        bns = [("stem_bn", self.stem_bn), ("head_bn", self.head_bn)]
        for (tag, _), conv, bn in zip(self.tags, self.convs, self.bns):
            out += [(f"{tag}_conv", "kernel", conv.weight.permute(2, 3, 1, 0)),
                    (f"{tag}_conv", "kernel_scale", conv.alpha.reshape(-1))]
            bns.append((f"{tag}_bn", bn))
        for name, bn in bns:
            out += [(name, "gamma", bn.weight), (name, "beta", bn.bias), (name, "moving_mean", bn.running_mean)]
        out += [("classifier", "kernel", self.linear.weight.T), ("classifier", "bias", self.linear.bias)]
        return out


def training_step(model, optimizer, x, y, tau, lr):
    """One step of the authors' loop: cross-entropy + tau * sin^2 term, SGD at `lr`."""
    model.train()
    logits, _ = model(x)
    loss = F.cross_entropy(logits, y)
    if tau:
        loss = loss + sum(tau * conv.sin_squared() for conv in model.convs)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach().item()
