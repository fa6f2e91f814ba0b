"""The text a user types, read in one place: values, loss specs and comma-separated lists.

* a value (``--param KEY=VALUE``, a loss term's ``KEY=VALUE``): :func:`parse_value`, the one
  coercer from text; the consumer (protocol, network, loss) then checks the type it needs;
* a loss spec (``--loss``, ``RunConfig.loss``)::

      spec  := term ("+" term)*
      term  := NAME ["(" KEY "=" VALUE ("," KEY "=" VALUE)* ")"]

  e.g. ``"dice+ce"``, ``"ufl(gamma=0.1)+fdpt(eps=0.1)"``: :func:`parse_loss_spec`;
* a list of loss specs (``--losses``): :func:`split_loss_list` splits at top-level commas only,
  so ``"ufl(gamma=0.2,delta=0.6),dice"`` is two losses;
* lists of names and integers (``--dataset``, ``--models``, ``--seeds``, ``--fold``, ``--gpus``).

No torch, no registries: the report reads loss specs with it as well as the CLI.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

from focalbench.errors import FocalbenchError

_TERM = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*")


def parse_value(text: str) -> Any:
    """Read ``3``, ``0.1``, ``true``, ``none``, ``[2,6,9]``, ``256x256`` or a bare string."""
    lowered = text.strip().lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if lowered in {"none", "null"}:
        return None
    size = re.fullmatch(r"(\d+)x(\d+)", lowered)
    if size:
        return [int(size.group(1)), int(size.group(2))]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip()


def split_top_level(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside brackets, so ``smooth=1e+5`` or ``[1,2]`` stay whole."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_loss_spec(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """Read a loss spec into its terms.

    ``"ufl(gamma=0.1)+fdpt(eps=0.1)"`` → ``[("ufl", {"gamma": 0.1}), ("fdpt", {"eps": 0.1})]``.
    """
    terms = []
    for text in split_top_level(spec, "+"):
        match = _TERM.fullmatch(text)
        if not match:
            raise FocalbenchError(
                f"cannot read loss term {text.strip()!r} in {spec!r}; "
                "write e.g. 'ufl(gamma=0.1)+fdpt(eps=0.1)'"
            )
        name, inside = match.group(1), match.group(2)
        params: dict[str, Any] = {}
        for pair in split_top_level(inside or "", ","):
            if not pair.strip():
                continue  # "dice()" or a trailing comma
            key, sep, value = pair.partition("=")
            if not sep or not key.strip().isidentifier():
                raise FocalbenchError(
                    f"loss term {text.strip()!r}: {pair.strip()!r} is not KEY=VALUE; "
                    "write e.g. ufl(gamma=0.1)"
                )
            params[key.strip()] = parse_value(value)
        terms.append((name, params))
    return terms


def split_loss_list(text: str | Sequence[str] | None) -> list[str]:
    """``"ufl(gamma=0.2,delta=0.6),dice"`` → ``["ufl(gamma=0.2,delta=0.6)", "dice"]``."""
    if text is None:
        return []
    parts = split_top_level(text, ",") if isinstance(text, str) else list(text)
    return [p.strip() for p in parts if p.strip()]


def split_names(values: str | Sequence[Any] | None) -> list[str]:
    """``"drive,dsb2018"`` (or a list) → ``["drive", "dsb2018"]``."""
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    return [str(v).strip() for v in values if str(v).strip()]


def parse_ints(values: str | int | Sequence[int] | None, flag: str) -> list[int]:
    """``"0,1,2"`` (or an int, or a list) → ``[0, 1, 2]``; anything else names ``flag``'s form."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = [values]
    try:
        return [int(v) for v in split_names(values)]
    except ValueError:
        raise FocalbenchError(
            f"{flag} takes integers separated by commas, e.g. {flag} 0,1,2"
        ) from None
