"""Keras arithmetic: TensorFlow 'same' padding worked out by hand, Keras BatchNorm, and the audit
that every Keras-referenced network uses them where PyTorch's conventions differ."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.models import build_model, list_models, model_info
from focalbench.models.keras import Conv2dSame, ConvTranspose2dSame, conv2d_same, tf_same_padding

# x = [[ 0,  1,  2,  3],
#      [ 4,  5,  6,  7],
#      [ 8,  9, 10, 11],
#      [12, 13, 14, 15]]
X4 = torch.arange(16.0).view(1, 1, 4, 4)


def _ones(layer: nn.Module) -> nn.Module:
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    return layer


@pytest.mark.parametrize(
    "size,kernel,stride,expected",
    [
        # out = ceil(n/s); total = max((out-1)s + k - n, 0); before = total // 2
        (4, 3, 2, (0, 1)),  # out 2: (1)2 + 3 - 4 = 1 -> all of it after
        (5, 3, 2, (1, 1)),  # out 3: (2)2 + 3 - 5 = 2 -> one each side, as PyTorch's padding=1
        (4, 3, 1, (1, 1)),  # stride 1, odd kernel: symmetric
        (4, 2, 1, (0, 1)),  # even kernel: the extra zero goes after
        (4, 2, 2, (0, 0)),  # (1)2 + 2 - 4 = 0
        (5, 2, 2, (0, 1)),  # out 3: (2)2 + 2 - 5 = 1
        (4, 1, 2, (0, 0)),  # (1)2 + 1 - 4 < 0 -> none
        (8, 5, 2, (1, 2)),  # out 4: (3)2 + 5 - 8 = 3
    ],
)
def test_tf_same_padding_by_hand(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


def test_stride_2_conv3x3_on_a_4x4_input_pads_only_bottom_and_right():
    conv = _ones(Conv2dSame(1, 1, 3, stride=2))
    # windows start at rows/cols 0 and 2; the window at 2 covers 2, 3 and one zero row/col:
    # y00 = x[0:3, 0:3] = 0+1+2+4+5+6+8+9+10 = 45     y01 = x[0:3, 2:4] = 2+3+6+7+10+11 = 39
    # y10 = x[2:4, 0:3] = 8+9+10+12+13+14 = 66         y11 = x[2:4, 2:4] = 10+11+14+15 = 50
    assert conv(X4).flatten().tolist() == [45.0, 39.0, 66.0, 50.0]
    # PyTorch's padding=1 centres the first window on x00 instead: 0+1+4+5 = 10
    assert F.conv2d(X4, conv.weight, stride=2, padding=1)[0, 0, 0, 0].item() == 10.0


def test_stride_2_conv3x3_on_a_5x5_input_pads_one_each_side():
    conv = _ones(Conv2dSame(1, 1, 3, stride=2))
    x = torch.arange(25.0).view(1, 1, 5, 5)
    y = conv(x)
    # 1 zero before: y00 = x[0:2, 0:2] = 0+1+5+6 = 12; y22 = x[3:5, 3:5] = 18+19+23+24 = 84
    assert y.shape[-2:] == (3, 3) and y[0, 0, 0, 0].item() == 12.0 and y[0, 0, 2, 2].item() == 84.0
    torch.testing.assert_close(y, F.conv2d(x, conv.weight, stride=2, padding=1))


def test_conv2x2_stride_1_adds_one_zero_row_and_column_after():
    conv = _ones(Conv2dSame(1, 1, 2))
    y = conv(X4)[0, 0]
    # y_ij = x_ij + x_i,j+1 + x_i+1,j + x_i+1,j+1, zeros past the edge
    assert y.shape == (4, 4)
    assert [y[0, 0].item(), y[0, 3].item(), y[3, 0].item(), y[3, 3].item()] == [
        10.0,
        3 + 7,
        12 + 13,
        15.0,
    ]


def test_conv2x2_stride_2_needs_no_padding_on_even_sides_and_one_after_on_odd():
    conv = _ones(Conv2dSame(1, 1, 2, stride=2))
    assert conv(X4).flatten().tolist() == [10.0, 18.0, 42.0, 50.0]  # 0+1+4+5, 2+3+6+7, ...
    y = conv(torch.arange(25.0).view(1, 1, 5, 5))
    assert y.shape[-2:] == (3, 3) and y[0, 0, 2, 2].item() == 24.0  # x44 and three zeros


def test_conv1x1_stride_2_is_unpadded():
    conv = _ones(Conv2dSame(1, 1, 1, stride=2))
    assert conv(torch.arange(25.0).view(1, 1, 5, 5)).flatten().tolist() == [
        0,
        2,
        4,
        10,
        12,
        14,
        20,
        22,
        24,
    ]


def test_transposed_conv3x3_stride_2_on_a_4x4_input_cuts_the_last_row_and_column():
    convt = _ones(ConvTranspose2dSame(1, 1, 3, stride=2))
    y = convt(torch.ones(1, 1, 4, 4))[0, 0]
    # full output 9x9: row p receives input rows i with 2i <= p <= 2i + 2, i = 0..3, so
    # r = [1, 1, 2, 1, 2, 1, 2, 1, 1] for p = 0..8; Keras keeps p = 0..7 and y_pq = r_p·r_q
    r = torch.tensor([1.0, 1, 2, 1, 2, 1, 2, 1])
    assert y.shape == (8, 8)
    torch.testing.assert_close(y, torch.outer(r, r))
    # PyTorch's padding=1, output_padding=1 keeps p = 1..8 instead: r = [1, 2, 1, 2, 1, 2, 1, 1]
    torch_style = F.conv_transpose2d(
        torch.ones(1, 1, 4, 4), convt.weight, stride=2, padding=1, output_padding=1
    )[0, 0]
    assert torch_style[0].tolist() == [1.0, 2, 1, 2, 1, 2, 1, 1]


def test_transposed_conv3x3_stride_2_hand_values_with_an_asymmetric_kernel():
    convt = ConvTranspose2dSame(1, 1, 3, stride=2)
    with torch.no_grad():
        convt.weight.copy_(
            torch.arange(1.0, 10.0).view(1, 1, 3, 3)
        )  # w = [[1,2,3],[4,5,6],[7,8,9]]
        convt.bias.zero_()
    y = convt(X4)[0, 0]
    # y_pq = Σ x_ij · w[p − 2i, q − 2j]
    assert y[0, 0].item() == 0.0  # x00·w00
    assert y[1, 1].item() == 0.0  # x00·w11 = 0·5
    assert (
        y[2, 2].item() == 9 * 0 + 7 * 1 + 3 * 4 + 1 * 5
    )  # x00·w22 + x01·w20 + x10·w02 + x11·w00 = 24
    assert y[7, 7].item() == 15 * 5  # only x33·w11
    assert y[0, 2].item() == 0 * 3 + 1 * 1  # x00·w02 + x01·w00
    assert y[1, 2].item() == 0 * 6 + 1 * 4  # x00·w12 + x01·w10


def test_transposed_conv3x3_stride_2_on_an_odd_side_doubles_it_from_the_same_corner():
    convt = _ones(ConvTranspose2dSame(1, 1, 3, stride=2))
    y = convt(torch.ones(1, 1, 3, 3))[0, 0]
    # full 7x7 rows: r = [1, 1, 2, 1, 2, 1, 1]; Keras keeps the first 6
    r = torch.tensor([1.0, 1, 2, 1, 2, 1])
    torch.testing.assert_close(y, torch.outer(r, r))


def test_transposed_conv_stride_1_and_2x2_stride_2_equal_pytorch():
    x = torch.randn(1, 2, 5, 4)
    one = ConvTranspose2dSame(2, 3, 3, stride=1)
    torch.testing.assert_close(one(x), F.conv_transpose2d(x, one.weight, one.bias, padding=1))
    two = ConvTranspose2dSame(2, 3, 2, stride=2)
    torch.testing.assert_close(two(x), F.conv_transpose2d(x, two.weight, two.bias, stride=2))


def test_conv2d_same_is_a_plain_conv_where_the_conventions_agree():
    assert type(conv2d_same(2, 2, 3)) is nn.Conv2d and conv2d_same(2, 2, 3).padding == (1, 1)
    assert (
        type(conv2d_same(2, 2, 3, stride=2)) is Conv2dSame
        and type(conv2d_same(2, 2, 2)) is Conv2dSame
    )


# ---------------------------------------------------------------------------------------------- audit


def _keras_networks():
    return [n for n in list_models() if not n.startswith("smp-")]


@pytest.mark.parametrize("name", _keras_networks())
def test_every_keras_network_pads_the_tensorflow_way_where_it_differs(name):
    net = build_model(name, **model_info(name)["tiny_params"])
    for module in net.modules():
        if isinstance(module, nn.ConvTranspose2d):
            k, s = module.kernel_size[0], module.stride[0]
            assert k == s and module.padding == (0, 0) or isinstance(module, ConvTranspose2dSame), (
                name,
                module,
            )
        elif isinstance(module, nn.Conv2d) and not isinstance(module, Conv2dSame):
            k, s = module.kernel_size[0], module.stride[0]
            assert k % 2 == 1 and module.padding[0] == k // 2 and (s == 1 or k == 1), (name, module)


@pytest.mark.parametrize("name", _keras_networks())
def test_every_keras_network_uses_keras_batch_norm(name):
    net = build_model(name, **model_info(name)["tiny_params"])
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
    assert all(m.eps == 1e-3 for m in norms), name
    assert all(m.momentum == 0.01 for m in norms if isinstance(m, nn.BatchNorm2d)), name
    if norms:  # (the code's UNet++ has no normalisation)
        assert (
            model_info(name)["defaults"]["bn_eps"] == 1e-3
            and model_info(name)["defaults"]["bn_momentum"] == 0.01
        )


def test_keras_momentum_099_is_torch_momentum_001():
    # Keras: moving = 0.99·moving + 0.01·batch. One training step from moving mean 0 on a batch of
    # mean 2 must give 0.02.
    bn = build_model("pyramid-attention-unet", width=8).conv1[1]
    bn.train()
    bn(torch.full((2, bn.num_features, 3, 3), 2.0))
    torch.testing.assert_close(bn.running_mean, torch.full_like(bn.running_mean, 0.02))


def test_batch_norm_parameters_can_be_set_and_are_checked():
    net = build_model("bcdu-net", width=8, bn_eps=1e-5, bn_momentum=0.1)
    assert {(m.eps, m.momentum) for m in net.modules() if isinstance(m, nn.BatchNorm2d)} == {
        (1e-5, 0.1)
    }
    with pytest.raises(
        FocalbenchError,
        match=r"bn_momentum=1.5 must be a number in \(0, 1\].*Keras' momentum 0.99 is 0.01",
    ):
        build_model("unet", bn_momentum=1.5)
    with pytest.raises(FocalbenchError, match=r"bn_eps=0 must be a number > 0"):
        build_model("focusnet", bn_eps=0)


def test_pyramid_builds_its_transposed_convs_the_keras_way():
    net = build_model("pyramid-attention-unet", width=8)
    up = net.up[0][0]
    assert isinstance(up, ConvTranspose2dSame) and up.padding == (0, 0)
    assert all(isinstance(g.phi[1], ConvTranspose2dSame) for g in net.gates.values())
