"""``torch.compile`` with an eager fallback: a run asked to compile trains eager, said once on
stderr, when compiling fails on this machine (inductor finds no C++ compiler on a CPU, Triton is
missing or too old for a GPU, dynamo cannot trace an operator), rather than failing its cell.

Compilation happens at the first call; its failure comes before the compiled graph runs, so the
eager call that replaces it sees the module's state (batch-norm statistics, parameters)
untouched, and the run's results are the eager run's.
"""

from __future__ import annotations

import sys
from typing import Any

import torch


class CompiledOrEager:
    """Call the ``torch.compile``'d module; after a compile failure, the module itself.

    ``eager_because`` is ``None`` while compiled, else the failure's first line.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.compiled = torch.compile(module)
        self.eager_because: str | None = None

    def __call__(self, x: torch.Tensor) -> Any:
        if self.eager_because is None:
            try:
                return self.compiled(x)
            except torch._dynamo.exc.TorchDynamoException as exc:
                why = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
                self.eager_because = why
                print(
                    f"focalbench: torch.compile failed here ({why}); this run trains eager",
                    file=sys.stderr,
                    flush=True,
                )
        return self.module(x)
