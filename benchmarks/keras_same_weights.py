"""Same weights, two frameworks: focalbench's Keras-arithmetic layers against Keras itself.

Not a CI test (it needs TensorFlow). Install it beside focalbench, e.g.
``pip install --target /tmp/tfpkgs tensorflow-cpu tf-keras``, then run
``PYTHONPATH=$PWD:/tmp/tfpkgs python benchmarks/keras_same_weights.py``.

For each layer kind whose padding or normalisation differs between the conventions, the
script builds the Keras layer (tf-keras, the Keras 2 API the authors' code used), copies one
set of random weights into it and into focalbench's layer and into the plain-PyTorch layer a
naive port would use, runs the same input through all three and prints the largest absolute
difference from Keras. Then the authors' attention gate (``newmodels.py`` ``AttnGatingBlock``,
rebuilt layer for layer) against :class:`focalbench.models.blocks.AttentionGate`.
"""

from __future__ import annotations

import argparse

import numpy as np
import tf_keras as keras  # noqa: E402  (after torch: TensorFlow first makes torch's triton import crash)
import torch
import torch.nn.functional as F

from focalbench.models.blocks import AttentionGate, GateForm, Norm
from focalbench.models.keras import Conv2dSame, ConvTranspose2dSame, batch_norm

L = keras.layers


def _nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def _nchw(y) -> torch.Tensor:
    return torch.from_numpy(np.array(y)).permute(0, 3, 1, 2)


def _conv_kernel(w: torch.Tensor) -> np.ndarray:  # (out, in, kh, kw) -> (kh, kw, in, out)
    return w.detach().permute(2, 3, 1, 0).numpy()


def _convt_kernel(w: torch.Tensor) -> np.ndarray:  # (in, out, kh, kw) -> (kh, kw, out, in)
    return w.detach().permute(2, 3, 1, 0).numpy()


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


def layer_rows(size: int) -> list[tuple[str, float, float]]:
    """``(layer, |ours − Keras|, |naive PyTorch − Keras|)`` for one input side ``size``."""
    x = torch.randn(2, 4, size, size)
    rows = []
    for kernel, stride in ((3, 2), (2, 1)):
        ours = Conv2dSame(4, 5, kernel, stride=stride)
        k = L.Conv2D(5, kernel, strides=stride, padding="same")
        k.build((None, size, size, 4))
        k.set_weights([_conv_kernel(ours.weight), ours.bias.detach().numpy()])
        ref = _nchw(k(_nhwc(x)))
        naive = F.conv2d(x, ours.weight, ours.bias, stride=stride, padding=kernel // 2)
        naive = naive[
            ..., : ref.shape[-2], : ref.shape[-1]
        ]  # a 2×2 kernel with padding 1 grows by one
        with torch.no_grad():
            rows.append(
                (
                    f"Conv2D {kernel}x{kernel} s{stride} 'same'",
                    _diff(ours(x), ref),
                    _diff(naive, ref),
                )
            )
    ours = ConvTranspose2dSame(4, 5, 3, stride=2)
    k = L.Conv2DTranspose(5, 3, strides=2, padding="same")
    k.build((None, size, size, 4))
    k.set_weights([_convt_kernel(ours.weight), ours.bias.detach().numpy()])
    ref = _nchw(k(_nhwc(x)))
    naive = F.conv_transpose2d(x, ours.weight, ours.bias, stride=2, padding=1, output_padding=1)
    with torch.no_grad():
        rows.append(("Conv2DTranspose 3x3 s2 'same'", _diff(ours(x), ref), _diff(naive, ref)))
    # BatchNorm: one training step (output and moving mean), then inference
    ours, naive = batch_norm(4), torch.nn.BatchNorm2d(4)
    k = L.BatchNormalization()
    k.build((None, size, size, 4))
    z = x * 1e-2  # a small variance makes ε visible
    out = ours.train()(z)
    naive_out = naive.train()(z)
    ref = _nchw(k(_nhwc(z), training=True))
    rows.append(("BatchNormalization, training output", _diff(out, ref), _diff(naive_out, ref)))
    moving = torch.from_numpy(k.moving_mean.numpy())
    rows.append(
        (
            "BatchNormalization, moving mean",
            _diff(ours.running_mean, moving),
            _diff(naive.running_mean, moving),
        )
    )
    return rows


def keras_attention_gate(x, g, inter: int):
    """``newmodels.py`` ``UnetGatingSignal`` + ``AttnGatingBlock``, layer for layer.

    Returns the output and the weighted layers in the order :func:`_gate_weights` fills them.
    """
    gating, gating_bn = L.Conv2D(g.shape[-1], 1, padding="same"), L.BatchNormalization()
    gate = L.Activation("relu")(gating_bn(gating(g)))
    theta_conv = L.Conv2D(inter, 2, strides=2, padding="same")
    theta = theta_conv(x)
    phi_conv = L.Conv2D(inter, 1, padding="same")
    ratio = theta.shape[1] // g.shape[1]
    up_conv = L.Conv2DTranspose(inter, 3, strides=ratio, padding="same")
    up = up_conv(phi_conv(gate))
    psi_conv = L.Conv2D(1, 1, padding="same")
    psi = L.Activation("sigmoid")(psi_conv(L.Activation("relu")(L.add([up, theta]))))
    psi = L.UpSampling2D(size=x.shape[1] // psi.shape[1])(psi)
    y = L.multiply([psi, x])  # broadcast over channels = the code's repeat_elements
    out_conv, out_bn = L.Conv2D(x.shape[-1], 1, padding="same"), L.BatchNormalization()
    layers = [gating, gating_bn, theta_conv, phi_conv, up_conv, psi_conv, out_conv, out_bn]
    return out_bn(out_conv(y)), layers


def _gate_weights(gate: AttentionGate) -> list[list[np.ndarray]]:
    def bn(m):
        return [t.detach().numpy() for t in (m.weight, m.bias, m.running_mean, m.running_var)]

    def conv(m, kernel=_conv_kernel):
        return [kernel(m.weight), m.bias.detach().numpy()]

    return [
        conv(gate.gating[0]),
        bn(gate.gating[1]),
        conv(gate.theta),
        conv(gate.phi[0]),
        conv(gate.phi[1], _convt_kernel),
        conv(gate.psi),
        conv(gate.out[0]),
        bn(gate.out[1]),
    ]


def gate_row(size: int, ratio: int) -> tuple[str, float, float]:
    cx, cg, inter = 4, 6, 5
    xin = keras.Input((size, size, cx))
    gin = keras.Input((size // 2 // ratio, size // 2 // ratio, cg))
    out, layers = keras_attention_gate(xin, gin, inter)
    model = keras.Model([xin, gin], out)
    ours = AttentionGate(cx, cg, inter, GateForm.ABRAHAM, Norm.BATCH, g_stride=ratio).eval()
    with torch.no_grad():  # non-trivial BN statistics, so inference uses them
        for m in (ours.gating[1], ours.out[1]):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    for layer, weights in zip(layers, _gate_weights(ours), strict=False):
        layer.set_weights(weights)
    x, g = (
        torch.randn(2, cx, size, size),
        torch.randn(2, cg, size // 2 // ratio, size // 2 // ratio),
    )
    ref = _nchw(model([_nhwc(x), _nhwc(g)], training=False))
    with torch.no_grad():
        out = ours(x, g)
        # a naive port: PyTorch's symmetric padding for φ's transposed conv
        convt = ours.phi[1]
        phi = F.conv_transpose2d(
            ours.phi[0](ours.gating(g)),
            convt.weight,
            convt.bias,
            stride=ratio,
            padding=1,
            output_padding=ratio - 1,
        )
        alpha = torch.sigmoid(ours.psi(F.relu(ours.theta(x) + phi)))
        naive = ours.out(F.interpolate(alpha, size=x.shape[-2:], mode="nearest") * x)
    return (f"AttnGatingBlock (g at 1/{2 * ratio}, eval)", _diff(out, ref), _diff(naive, ref))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    keras.utils.set_random_seed(args.seed)
    print("| layer | input side | max abs diff, focalbench vs Keras | naive PyTorch vs Keras |")
    print("|---|---|---|---|")
    for size in (8, 9):
        for name, ours, naive in layer_rows(size):
            print(f"| {name} | {size} | {ours:.2e} | {naive:.2e} |")
    for ratio in (1, 2):
        name, ours, naive = gate_row(16, ratio)
        print(f"| {name} | 16 | {ours:.2e} | {naive:.2e} |")


if __name__ == "__main__":
    main()
