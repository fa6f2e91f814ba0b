"""Shared test set-up: CPU only, few threads, deterministic."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads or writes the user's ./data, ./results or cache."""
    monkeypatch.setenv("FOCALBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FOCALBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FOCALBENCH_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
