"""The loss registry, the spec grammar and :func:`build_loss`.

The grammar (the ``--loss`` option and ``RunConfig.loss``) is read by
:func:`focalbench.grammar.parse_loss_spec`, e.g. ``"dice+ce"``,
``"ufl(gamma=0.1)+fdpt(eps=0.1)"``, ``"dice+ce+dpt"``. The terms are summed
with weight 1. ``dpt`` (ε = 1) and ``fdpt(eps=…)`` are not summands: they apply the boundary
weighting ``W = (1 + D)^ε`` to every other term (spec §8.2), optionally with ``mode=…``.
``adaptive_log`` and ``deep_supervision`` wrap a whole loss and stand alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.grammar import parse_loss_spec
from focalbench.losses import modules as M
from focalbench.registry import Registry

#: Weight names of the boundary terms of the grammar and their ε.
BOUNDARY_TERMS = {"dpt": 1.0, "fdpt": 0.1}


@dataclass(frozen=True)
class LossEntry:
    """A registered loss name: a sum of terms, or a wrapper around one (``wraps``)."""

    summary: str
    paper: str
    terms: tuple[type[M.Term], ...] = ()
    wraps: str | None = None  # "adaptive_log" | "deep_supervision"
    own_defaults: dict[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        """Every parameter the name accepts, with its default."""
        merged: dict[str, Any] = dict(self.own_defaults)
        for term in self.terms:
            merged.update(term.defaults())
        return merged


LOSSES: Registry[LossEntry] = Registry("loss")


def _term(name: str, cls: type[M.Term]) -> None:
    LOSSES.add(name, LossEntry(cls.summary, cls.paper, (cls,)))


_term("dice", M.Dice)
_term("ce", M.CrossEntropy)
LOSSES.add(
    "dice_ce",
    LossEntry(
        "Dice + cross-entropy, weights 1:1 (MIScnn dice_crossentropy)",
        "000",
        (M.Dice, M.CrossEntropy),
    ),
)
_term("tversky", M.Tversky)
_term("focal_tversky", M.FocalTversky)
_term("focal", M.Focal)
_term("asym_focal", M.AsymFocal)
_term("asym_focal_tversky", M.AsymFocalTversky)
_term("ufl", M.UnifiedFocal)
_term("balanced_ce", M.BalancedCE)
_term("hybrid", M.Hybrid)
_ALL_DEFAULTS = {"threshold": 0.1, "scale": 10.0, "epsilon": 0.5}
LOSSES.add(
    "adaptive_log",
    LossEntry(
        "adaptive logarithmic wrapper ALL(loss) of another loss (loss=NAME, default hybrid)",
        "002",
        wraps="adaptive_log",
        own_defaults={"loss": "hybrid", **_ALL_DEFAULTS},
    ),
)
LOSSES.add(
    "all_hybrid",
    LossEntry(
        "ALL(HL): FocusNet++ hybrid loss in the adaptive log wrapper",
        "002",
        (M.Hybrid,),
        "adaptive_log",
        dict(_ALL_DEFAULTS),
    ),
)
LOSSES.add(
    "deep_supervision",
    LossEntry(
        "focal Tversky on each side output + Tversky on the last (strided targets)",
        "003",
        (M.FocalTversky,),
        "deep_supervision",
    ),
)

#: The loss settings of each paper (spec §12) where they differ from the defaults, which are
#: paper 000's for dice/dice_ce/ufl, 002's for hybrid/balanced_ce and 003's for the Tversky family.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper000": {
        "dice": {"smooth": 1e-5, "reduction": "image", "classes": "both"},
        "ufl": {"lam": 0.5, "delta": 0.6},
    },
    "paper001": {"dice": {"smooth": 1.0, "reduction": "batch", "classes": "fg"}},
    "paper002": {"hybrid": {"k": 0.5, "omega": 0.7, "w_fn": 0.7, "w_fp": 0.3}},
    "paper003": {"dice": {"smooth": 1.0, "reduction": "batch", "classes": "fg"}},
}


def loss_presets() -> list[str]:
    return list(PRESETS)


def loss_preset(
    protocol: str, settings: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """The per-loss settings of a training protocol, with the dataset's UFL γ where the paper gives one.

    ``settings`` is ``datasets.paper_settings(dataset, protocol)``; its ``ufl_gamma`` (paper 000
    Table 1: DRIVE 0.1, 2018DSB 0.2, CVC-ClinicDB 0.3) becomes ``ufl``'s γ. A protocol without
    loss settings (e.g. ``smoke``) gives ``{}``: the losses' defaults. Pass the result as
    ``build_loss(spec, preset=...)``.
    """
    preset = {name: dict(values) for name, values in PRESETS.get(protocol, {}).items()}
    if settings and settings.get("ufl_gamma") is not None:
        preset.setdefault("ufl", {})["gamma"] = float(settings["ufl_gamma"])
    return preset


def build_loss(
    spec: str, *, preset: str | Mapping[str, Mapping[str, Any]] | None = None, **params: Any
) -> nn.Module:
    """Build a loss from a spec string; ``params`` go to every term that takes them.

    Precedence: term defaults < ``preset`` (a paper's name in :data:`PRESETS`, or a mapping
    ``{loss name: {param: value}}`` such as :func:`loss_preset` returns) < ``params`` <
    parameters written in the spec (``ufl(gamma=0.1)``). ``fdpt=ε`` / ``fdpt_mode=…`` in
    ``params`` set the boundary weighting like a ``+fdpt(eps=ε, mode=…)`` term, which wins
    over them when the spec has one. A parameter
    that no term takes raises :class:`FocalbenchError` listing the valid ones.

    >>> build_loss("dice+ce+dpt").needs_distance_map
    True
    """
    if isinstance(preset, str) and preset not in PRESETS:
        raise FocalbenchError(f"unknown loss preset {preset!r}; choose from: {', '.join(PRESETS)}")
    presets: Mapping[str, Mapping[str, Any]] = (
        PRESETS[preset] if isinstance(preset, str) else (preset or {})
    )
    shared = dict(params)
    fdpt, fdpt_mode = shared.pop("fdpt", None), shared.pop("fdpt_mode", M.FdptMode.PIXEL_WEIGHT)
    spec_fdpt, spec_mode, terms = _boundary_terms(spec)
    fdpt = fdpt if spec_fdpt is None else spec_fdpt
    fdpt_mode = fdpt_mode if spec_mode is None else spec_mode
    entries = [(name, LOSSES.get(name), own) for name, own in terms]
    wrappers = [name for name, entry, _ in entries if entry.wraps]
    if wrappers and len(entries) > 1:
        raise FocalbenchError(
            f"{wrappers[0]!r} wraps a whole loss and cannot be summed in {spec!r}; use it alone (plus dpt/fdpt)"
        )
    if wrappers:
        name, entry, own = entries[0]
        return _build_wrapper(name, entry, shared, own, presets, fdpt, fdpt_mode)
    _check_names(spec, shared, [entry.defaults() for _, entry, _ in entries])
    built: list[M.Term] = []
    for name, entry, own in entries:
        _check_names(name, own, [entry.defaults()])
        for term in entry.terms:
            built.append(_make_term(term, {**_preset_of(term, presets), **shared, **own}))
    return M.Loss(built, fdpt=fdpt, fdpt_mode=fdpt_mode)


def _boundary_terms(spec: str) -> tuple[float | None, str | None, list[tuple[str, dict[str, Any]]]]:
    fdpt, mode, rest = None, None, []
    for name, own in parse_loss_spec(spec):
        if name not in BOUNDARY_TERMS:
            rest.append((name, own))
            continue
        if fdpt is not None:
            raise FocalbenchError(
                f"{spec!r} has more than one dpt/fdpt term; keep one, e.g. '+fdpt(eps=0.1)'"
            )
        valid = {"eps", "mode"} if name == "fdpt" else {"mode"}
        unknown = sorted(set(own) - valid)
        if unknown:
            raise FocalbenchError(
                f"{name} takes no parameter {unknown[0]!r}; valid: {', '.join(sorted(valid))}"
            )
        fdpt, mode = own.get("eps", BOUNDARY_TERMS[name]), own.get("mode")
    if not rest:
        raise FocalbenchError(
            f"{spec!r} has no loss term; write e.g. 'dice+fdpt(eps=0.1)'; losses: {', '.join(LOSSES.names())}"
        )
    return fdpt, mode, rest


def _check_names(where: str, given: dict[str, Any], accepted: list[dict[str, Any]]) -> None:
    valid = set().union(*accepted)
    unknown = sorted(set(given) - valid)
    if unknown:
        listed = ", ".join(sorted(valid | {"fdpt", "fdpt_mode"}))
        raise FocalbenchError(
            f"loss parameter {unknown[0]!r} is not taken by {where!r}; valid: {listed}"
        )


def _preset_of(term: type[M.Term], presets: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """A preset is keyed by the term's own registry name, so ``dice_ce`` gets the ``dice`` settings."""
    names = [name for name, entry in LOSSES.items() if entry.terms == (term,) and not entry.wraps]
    return presets.get(names[0], {}) if names else {}


def _make_term(term: type[M.Term], params: dict[str, Any]) -> M.Term:
    valid = term.defaults()
    return term(**{k: v for k, v in params.items() if k in valid})


def _build_wrapper(
    name: str,
    entry: LossEntry,
    shared: dict[str, Any],
    own: dict[str, Any],
    presets: Mapping[str, Mapping[str, Any]],
    fdpt: float | None,
    fdpt_mode: Any,
) -> nn.Module:
    if entry.wraps == "deep_supervision":
        params = {**shared, **own}
        _check_names(name, params, [entry.defaults()])
        side = _make_term(M.FocalTversky, {**_preset_of(M.FocalTversky, presets), **params})
        final = _make_term(M.Tversky, {**_preset_of(M.Tversky, presets), **params})
        return M.DeepSupervision(
            M.Loss([side], fdpt=fdpt, fdpt_mode=fdpt_mode),
            M.Loss([final], fdpt=fdpt, fdpt_mode=fdpt_mode),
        )
    params = {**shared, **own}
    wrapper = {k: params.pop(k) for k in list(params) if k in entry.own_defaults}
    inner_name = wrapper.pop("loss", "hybrid")
    inner = LOSSES.get(inner_name)
    if inner.wraps:
        raise FocalbenchError(
            f"adaptive_log cannot wrap {inner_name!r}; choose a plain loss, e.g. loss=hybrid"
        )
    _check_names(name, params, [inner.defaults()])
    terms = [_make_term(term, {**_preset_of(term, presets), **params}) for term in inner.terms]
    return M.AdaptiveLog(M.Loss(terms, fdpt=fdpt, fdpt_mode=fdpt_mode), **wrapper)


def list_losses() -> list[str]:
    return LOSSES.names()


def loss_info(name: str) -> dict[str, Any]:
    """``{"name", "summary", "paper", "defaults"}`` for ``focalbench losses``."""
    entry = LOSSES.get(name)
    return {
        "name": name,
        "summary": entry.summary,
        "paper": entry.paper,
        "defaults": entry.defaults(),
    }
