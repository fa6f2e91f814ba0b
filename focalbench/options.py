"""The options ``train``, ``ablate`` and ``prune --retrain`` share, defined once.

Where a run executes (device, folders, executor) and what overrides its recipe (protocol,
epochs, ``--param``): the CLI fills a :class:`RunOptions` from its flags of the same names
(:meth:`RunOptions.from_params`), and the Python API
takes the same names as keywords, e.g. ``focalbench.ablate("sample", models="unet",
losses="dice", protocol="smoke", params=["batch_size=2"], jobs=2)``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from focalbench.errors import FocalbenchError
from focalbench.grammar import parse_ints


@dataclass(frozen=True)
class RunOptions:
    """``protocol=None`` is the study's own (``train``: ``paper000``); ``epochs=None`` the
    protocol's. ``params`` are ``--param`` pairs (``model.KEY=V``, ``loss.KEY=V``, ``KEY=V``).
    ``gpus`` picks GPU indices for ablate's local pool (``"0,1"`` or ``[0, 1]``)."""

    protocol: str | None = None
    epochs: int | None = None
    params: tuple[str, ...] = ()
    device: str = "auto"
    results: str | os.PathLike | None = None
    data_dir: str | os.PathLike | None = None
    executor: str = "local"
    gpus: str | tuple[int, ...] | None = None
    jobs_per_gpu: int = 1
    jobs: int | None = None  # None: one cell per CPU core on CPU, else 1 (focalbench.threads)
    ray_address: str | None = None
    log: tuple[str, ...] = ()  # trackers mirroring each run (focalbench.tracking)
    mlflow_uri: str | None = None  # MLflow's store; None: <results>/mlruns
    # --executor slurm (focalbench.slurm): sbatch's --partition, --time, --gpus-per-node,
    # --cpus-per-task, --mem, --account, --qos, any other as KEY=VALUE; detach: submit and exit
    slurm_partition: str | None = None
    slurm_time: str | None = None
    slurm_gpus_per_job: int | None = None
    slurm_cpus_per_task: int | None = None
    slurm_mem: str | None = None
    slurm_account: str | None = None
    slurm_qos: str | None = None
    slurm_extra: tuple[str, ...] = ()
    detach: bool = False

    @classmethod
    def of(cls, options: RunOptions | None = None, **fields: Any) -> RunOptions:
        """``options`` with ``fields`` replaced; a name that is no option is a ``TypeError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r}; options: {', '.join(sorted(names))}")
        base = options or cls()
        for name in ("params", "log", "slurm_extra"):
            if name in fields:
                fields[name] = tuple(fields[name] or ())
        return dataclasses.replace(base, **fields)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunOptions:
        """The options among a command's parameters (Typer's ``ctx.params``): each parameter
        named like a field fills it, a choice by its value; the others are the command's own."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls.of(
            **{
                name: value.value if isinstance(value, Enum) else value
                for name, value in params.items()
                if name in names
            }
        )

    @property
    def gpu_list(self) -> list[int]:
        return parse_ints(self.gpus, "--gpus")

    def check(self) -> None:
        """Refuse out-of-range counts, a device this machine does not have and a tracker whose
        package is not installed."""
        from focalbench.checks import check_device
        from focalbench.slurm import check_options
        from focalbench.tracking import check_trackers

        check_options(self)
        if self.epochs is not None and self.epochs < 1:
            raise FocalbenchError(f"--epochs {self.epochs} must be ≥ 1 (or leave it out)")
        if (self.jobs is not None and self.jobs < 1) or self.jobs_per_gpu < 1:
            raise FocalbenchError("--jobs and --jobs-per-gpu must be ≥ 1")
        if self.gpu_list and self.device not in ("auto", "cuda"):
            raise FocalbenchError(
                f"--gpus picks the devices; drop --device {self.device} (or drop --gpus)"
            )
        if self.executor != "slurm":  # a Slurm job's node has its own devices
            check_device(self.device, self.gpu_list)
        check_trackers(self.log)

    @property
    def tracking(self) -> dict[str, Any]:
        """The keywords of :func:`focalbench.engine.train` that mirror a run into trackers."""
        return {"log": list(self.log), "mlflow_uri": self.mlflow_uri} if self.log else {}
