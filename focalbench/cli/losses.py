"""`focalbench losses`: the registered losses with their papers and defaults."""

from __future__ import annotations

from focalbench.cli._common import JsonOption, command, print_json


@command()
def losses(json_out: bool = JsonOption) -> None:
    """List the losses with their defaults; combine them in --loss with the spec grammar.

    Example: focalbench train ... --loss 'ufl(gamma=0.1)+fdpt(eps=0.1)'  (terms add up; +dpt or
    +fdpt(eps=E, mode=pixel_weight|replace_gt) weights every other term by (1 + D)^E).
    """
    from focalbench.losses import list_losses, loss_info, loss_presets

    infos = [loss_info(name) for name in list_losses()]
    if json_out:
        print_json(
            {
                "losses": infos,
                "boundary_terms": {
                    "dpt": {"eps": 1.0},
                    "fdpt": {"eps": 0.1, "mode": "pixel_weight"},
                },
                "presets": loss_presets(),
            }
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="losses (spec grammar: 'dice+ce+dpt', 'ufl(gamma=0.1)+fdpt(eps=0.1)')")
    for column in ("name", "paper", "summary", "defaults"):
        table.add_column(column, overflow="fold")
    for info in infos:
        defaults = (
            ", ".join(
                f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in info["defaults"].items()
            )
            or "-"
        )
        table.add_row(info["name"], info["paper"], info["summary"], defaults)
    table.add_row(
        "dpt / fdpt",
        "000",
        "boundary weight W = (1 + D)^eps on every other term",
        "dpt: eps=1; fdpt: eps=0.1, mode=pixel_weight",
    )
    console = Console(width=160)
    console.print(table)
    console.print(f"presets (build_loss(..., preset=NAME)): {', '.join(loss_presets())}")
