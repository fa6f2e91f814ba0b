"""Pretrained smp encoders offline: weights from a local file, never a download."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.errors import FocalbenchError
from focalbench.models import build_model


def test_an_encoder_state_dict_saved_to_a_file_loads_back_through_encoder_weights(tmp_path):
    source = build_model("smp-unet", in_channels=3, encoder="resnet18")
    torch.save(source.net.encoder.state_dict(), tmp_path / "resnet18.pth")
    for weights in (tmp_path / "resnet18.pth", tmp_path):  # the file, or a folder holding it
        loaded = build_model(
            "smp-unet", in_channels=3, encoder="resnet18", encoder_weights=str(weights)
        )
        saved, got = source.net.encoder.state_dict(), loaded.net.encoder.state_dict()
        assert saved.keys() == got.keys() and all(torch.equal(saved[k], got[k]) for k in saved)
    grey = build_model(
        "smp-unet",
        in_channels=1,
        encoder="resnet18",
        encoder_weights=str(tmp_path / "resnet18.pth"),
    )
    # a grey image has three equal channels: the 1-channel kernel is the sum of the three
    assert torch.equal(
        grey.net.encoder.conv1.weight, source.net.encoder.conv1.weight.sum(1, keepdim=True)
    )


def test_hub_weights_are_refused_with_one_line_naming_the_file_to_make(tmp_path):
    with pytest.raises(
        FocalbenchError, match=r"never downloads.*torch.save\(smp.encoders.get_encoder\('resnet18'"
    ):
        build_model("smp-unet", encoder="resnet18", encoder_weights="imagenet")
    out = CliRunner().invoke(
        app,
        [
            "train",
            "--dataset",
            "sample",
            "--model",
            "smp-unet",
            "--loss",
            "dice",
            "--protocol",
            "smoke",
            "--param",
            "model.encoder_weights=imagenet",
        ],
    )
    assert (
        out.exit_code == 2
        and out.output.count("\n") == 1
        and "model.encoder_weights=/path/" in out.output
    )


def test_weights_of_another_encoder_are_one_line(tmp_path):
    torch.save(
        build_model("smp-unet", encoder="resnet18").net.encoder.state_dict(), tmp_path / "r18.pth"
    )
    with pytest.raises(FocalbenchError, match="does not fit encoder 'resnet34'"):
        build_model("smp-unet", encoder="resnet34", encoder_weights=str(tmp_path / "r18.pth"))
