"""Every input checked before any work: a mistake is one line, and no folder is made.

``train``, ``ablate`` (``--dry-run`` included) and ``prune --retrain`` call :func:`check_device`
and :func:`check_configs` before they create a run or grid folder, so a typo in ``--param``
fails once, naming the fix, instead of once per cell with a failed run folder each.

What is checked, per distinct configuration: the dataset is known and prepared; the protocol
exists and every protocol ``--param`` key is one of its fields ("did you mean …" from the real
field names), with its value's type and range (the protocol's own coercion); the network exists,
takes every ``model.KEY`` ("did you mean …") with a valid value, and takes the input size (built
on the meta device, so no memory or time is spent on weights); the loss spec parses and builds
with its ``loss.KEY`` parameters ("did you mean …"). The device exists (``--device cuda``
without CUDA, or ``--gpus 3`` on a two-GPU machine, is refused: those cells would all fail for a
reason that is not theirs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.registry import did_you_mean


def check_device(device: str = "auto", gpus: Sequence[int] = ()) -> None:
    """Refuse a device or GPU index this machine does not have."""
    import torch

    from focalbench.engine.device import resolve_device

    if not gpus:
        resolve_device(device)
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise FocalbenchError(
            f"--gpus {','.join(map(str, gpus))} asks for CUDA but no CUDA device is visible; "
            "drop --gpus (and use --jobs N for CPU cells)"
        )
    missing = [g for g in gpus if not 0 <= g < count]
    if missing:
        raise FocalbenchError(
            f"--gpus {missing[0]}: only {count} CUDA device(s) visible (0…{count - 1}); "
            f"use e.g. --gpus {','.join(str(i) for i in range(count))}"
        )


def check_configs(configs: Iterable[RunConfig], data_dir: str | None = None) -> None:
    """Refuse unknown or unprepared datasets, protocols, networks, losses and parameters."""
    seen: set[str] = set()
    for config in configs:
        # configs differing only in seed or fold are checked once
        text = config.replace(seed=0, fold=None, pruned_from=None).canonical_json()
        if text not in seen:
            seen.add(text)
            check_config(config, data_dir)


def check_config(config: RunConfig, data_dir: str | None = None) -> None:
    """Everything :func:`check_configs` checks, for one configuration."""
    from focalbench import datasets
    from focalbench.datasets.prepared import fetch_hint, read_meta
    from focalbench.protocols import get_protocol, overridable_fields, resolve

    get_protocol(config.protocol)
    for key in config.overrides:
        _known_key(key, overridable_fields(), "", "a protocol field")
    settings = datasets.paper_settings(config.dataset, config.protocol, data_dir)
    if read_meta(config.dataset, data_dir) is None:
        raise FocalbenchError(
            f"dataset {config.dataset!r} is not prepared; run: {fetch_hint(config.dataset)}"
        )
    recipe = resolve(config, settings)
    _check_model(config, recipe, int(settings.get("channels") or 3))
    _check_loss(config, settings)


def _known_key(key: str, valid: Iterable[str], scope: str, what: str) -> None:
    valid = sorted(valid)
    if key in valid:
        return
    hint = did_you_mean(key, valid)
    prefix = f"{scope}." if scope else ""
    suggestion = f"did you mean --param {prefix}{hint}=…? " if hint else ""
    raise FocalbenchError(
        f"--param {prefix}{key}: {key!r} is not {what}; {suggestion}choose from: {', '.join(valid)}"
    )


def _check_model(config: RunConfig, recipe: object, in_channels: int) -> None:
    import torch

    from focalbench import models

    spec = models.MODELS.get(config.model)
    for key in config.model_params:
        _known_key(key, spec.allowed(), "model", f"a parameter of network {config.model!r}")
    tiny = models.model_info(config.model)["tiny_params"] if recipe.tiny_model else {}
    with torch.device("meta"):  # no weights are allocated: the check costs no memory
        model = models.build_model(
            config.model, in_channels=in_channels, **{**tiny, **config.model_params}
        )
    if recipe.size is not None:
        models.check_input_size(model, tuple(recipe.size))


def _check_loss(config: RunConfig, settings: dict) -> None:
    from focalbench.losses import build_loss, loss_preset

    valid = loss_param_names(config.loss)
    for key in config.loss_params:
        _known_key(key, valid, "loss", f"a parameter of loss {config.loss!r}")
    build_loss(config.loss, preset=loss_preset(config.protocol, settings), **config.loss_params)


def loss_param_names(spec: str) -> set[str]:
    """The ``loss.KEY`` names a loss spec's terms take (study files check rows with it too)."""
    from focalbench.grammar import parse_loss_spec
    from focalbench.losses import LOSSES
    from focalbench.losses.build import BOUNDARY_TERMS

    valid = {"fdpt", "fdpt_mode"}
    for name, own in parse_loss_spec(spec):
        if name in BOUNDARY_TERMS:
            continue
        entry = LOSSES.get(name)
        valid |= set(entry.defaults())
        if entry.wraps == "adaptive_log":
            valid |= set(LOSSES.get(str(own.get("loss", "hybrid"))).defaults())
    return valid
