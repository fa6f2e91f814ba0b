"""Study files: a study written as TOML, read into the same :class:`Study`/:class:`Row` objects
as the built-ins (so the planner treats both alike), and a built-in study written back as one.

The schema (docs/ablate.md § Study files)::

    name = "gamma-search"            # the grid's name prefix
    protocol = "paper000"
    seeds = [0, 1, 2]                # default --seeds
    folds = 5                        # optional: k-fold
    datasets = ["drive"]             # optional: default --dataset

    [table]                          # the table it feeds (report --study-file reads it)
    title = "UFL γ search"
    layout = "auto"                  # a report --table name
    # baseline = "dice"              # optional: report --baseline
    metrics = ["dsc", "recall"]      # optional: report --metrics (default: the layout's)

    [sweep]                          # a grid axis: every value × every row
    "loss.gamma" = [0.1, 0.2, 0.3]

    [[rows]]
    label = "UFL"
    network = "unet"
    loss = "ufl(gamma={gamma})"      # {NAME}: a per-dataset value
    params = { "model.width" = 8 }   # as --param: model.KEY, loss.KEY, protocol KEY

    [per_dataset.drive]
    values = { gamma = 0.1 }         # fills {gamma} for drive
    # [[per_dataset.drive.rows]] ... replaces [[rows]] for drive

Every mistake is one line ``FILE:LINE: KEY: what is wrong``. tomllib gives no line numbers for
keys, so :func:`locate` finds a key's line in the text by following the table headers.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import tomllib

from focalbench.errors import FocalbenchError
from focalbench.grammar import parse_loss_spec, split_names
from focalbench.grid.studies import Row, Study, TableSpec
from focalbench.registry import did_you_mean
from focalbench.report.layouts import TableName, metrics_problem

_TOP = ("name", "protocol", "seeds", "folds", "datasets", "table", "sweep", "rows", "per_dataset")
_TABLE = ("title", "layout", "baseline", "metrics")
_ROW = ("label", "network", "loss", "params", "pruned_from")
_PER_DATASET = ("values", "rows")
_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9_.\-]+)\s*=')
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ----------------------------------------------------------------------------------------------
# where a key is


def _key_parts(text: str) -> tuple[str, ...]:
    """``a.b`` → ``("a", "b")``; a quoted key ``"loss.gamma"`` is one part."""
    text = text.strip()
    if text.startswith('"'):
        return (json.loads(text),)
    return tuple(p.strip() for p in text.split("."))


def locate(text: str, path: tuple[str | int, ...]) -> int:
    """The 1-based line of ``path`` (``("rows", 2, "loss")``: the ``loss`` key of the second
    ``[[rows]]``), or of its nearest enclosing table found; 1 if none is."""
    lines: dict[tuple[str | int, ...], int] = {}
    counts: dict[tuple[str, ...], int] = {}
    current: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header and not line.lstrip().startswith("#"):
            parts = _key_parts(header.group(2))
            if header.group(1) == "[[":
                counts[parts] = counts.get(parts, 0) + 1
                current = (*parts, counts[parts])
            else:
                current = parts
            lines.setdefault(current, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*current, *_key_parts(key.group(1))), number)
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def _show(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Reader:
    """Raises every mistake as ``FILE:LINE: KEY: message``."""

    def __init__(self, file: Path, text: str) -> None:
        self.file, self.text = file, text

    def fail(self, path: tuple[str | int, ...], message: str) -> FocalbenchError:
        return FocalbenchError(
            f"{self.file}:{locate(self.text, path)}: {_show(path)}: {message}"
            if path
            else f"{self.file}: {message}"
        )

    def keys(self, table: dict[str, Any], allowed: tuple[str, ...], path: tuple) -> None:
        for key in table:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                guess = f" (did you mean {hint!r}?)" if hint else ""
                raise self.fail(
                    (*path, key),
                    f"unknown key{guess}; allowed: {', '.join(allowed)}",
                )

    def typed(self, value: Any, kind: type | tuple, path: tuple, what: str) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self.fail(path, f"must be {what}, got {value!r}")
        return value

    def names(self, value: Any, path: tuple) -> list[str]:
        self.typed(value, list, path, "a list of strings")
        for i, item in enumerate(value, 1):
            self.typed(item, str, (*path, i), "a string")
        return value


# ----------------------------------------------------------------------------------------------
# file → Study


def load_study(file: str | os.PathLike) -> Study:
    """Read and check a study file (names, loss terms, parameter keys) into a :class:`Study`."""
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FocalbenchError(f"--study-file {path}: cannot read it ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FocalbenchError(f"{path}: not valid TOML: {exc}") from None
    return parse_study(data, _Reader(path, text))


def parse_study(data: dict[str, Any], r: _Reader) -> Study:
    from focalbench.protocols import PROTOCOLS

    r.keys(data, _TOP, ())
    name = r.typed(data.get("name", r.file.stem), str, ("name",), "a string")
    protocol = r.typed(data.get("protocol", "paper000"), str, ("protocol",), "a string")
    if protocol not in PROTOCOLS:
        raise r.fail(("protocol",), _unknown("protocol", protocol, PROTOCOLS.names()))
    seeds = r.typed(data.get("seeds", []), list, ("seeds",), "a list of integers")
    for i, seed in enumerate(seeds, 1):
        r.typed(seed, int, ("seeds", i), "an integer")
    folds = data.get("folds")
    if folds is not None and (r.typed(folds, int, ("folds",), "an integer") < 2):
        raise r.fail(
            ("folds",), f"must be ≥ 2 (k-fold), got {folds}; leave it out for the fixed split"
        )
    datasets = r.names(data.get("datasets", []), ("datasets",))
    table = _table(r.typed(data.get("table", {}), dict, ("table",), "a table"), r, name)
    sweep = _sweep(r.typed(data.get("sweep", {}), dict, ("sweep",), "a table"), r)
    shared = _rows(data.get("rows", []), r, ("rows",))
    per_dataset: dict[str, tuple[list[tuple[Row, tuple]], dict[str, Any]]] = {}
    for ds, spec in r.typed(data.get("per_dataset", {}), dict, ("per_dataset",), "a table").items():
        where = ("per_dataset", ds)
        r.keys(r.typed(spec, dict, where, "a table"), _PER_DATASET, where)
        values = r.typed(spec.get("values", {}), dict, (*where, "values"), "a table")
        rows = _rows(spec["rows"], r, (*where, "rows")) if "rows" in spec else shared
        per_dataset[ds] = (rows, values)
    if not shared and not per_dataset:
        raise r.fail((), "no rows; add a [[rows]] table (label, network, loss)")

    def rows_for(dataset: str | None) -> list[Row]:
        rows, values = per_dataset.get(dataset or "", (shared, {}))
        if not rows:
            raise r.fail(
                ("per_dataset",),
                f"no rows for dataset {dataset!r}; add [[rows]] or [[per_dataset.{dataset}.rows]]",
            )
        filled = [(_fill(row, values, where, r, dataset), where) for row, where in rows]
        for row, where in filled:
            _check_row(row, where, r)
        return _swept([row for row, _ in filled], sweep)

    return Study(
        name,
        table,
        protocol,
        rows_for,
        folds=folds,
        datasets=", ".join(datasets or sorted(per_dataset)),
        seeds=tuple(seeds),
        default_datasets=tuple(datasets),
    )


def _unknown(what: str, name: str, options: list[str]) -> str:
    hint = did_you_mean(name, options)
    return (
        f"unknown {what} {name!r}"
        + (f" (did you mean {hint!r}?)" if hint else "")
        + (f"; choose from: {', '.join(options)}")
    )


def _table(spec: dict[str, Any], r: _Reader, name: str) -> TableSpec:
    r.keys(spec, _TABLE, ("table",))
    title = r.typed(spec.get("title", name), str, ("table", "title"), "a string")
    layout = r.typed(spec.get("layout", "auto"), str, ("table", "layout"), "a string")
    layouts = [t.value for t in TableName]
    if layout not in layouts:
        raise r.fail(("table", "layout"), _unknown("layout", layout, layouts))
    baseline = spec.get("baseline")
    if baseline is not None and not r.typed(
        baseline, str, ("table", "baseline"), "a string (a model, a loss or MODEL:LOSS)"
    ):
        raise r.fail(("table", "baseline"), "is empty; name a model, a loss or MODEL:LOSS")
    metrics = spec.get("metrics")
    if metrics is not None:
        metrics = tuple(r.names(metrics, ("table", "metrics")))
        if problem := metrics_problem(metrics):
            raise r.fail(("table", "metrics"), problem)
    return TableSpec(title, TableName(layout), baseline, metrics)


def _sweep(spec: dict[str, Any], r: _Reader) -> list[tuple[str, list[Any]]]:
    out = []
    for key, values in spec.items():
        where = ("sweep", key)
        _param_scope(key, where, r)
        if not isinstance(values, list) or not values:
            raise r.fail(where, f"must be a non-empty list of values, got {values!r}")
        out.append((key, values))
    return out


def _param_scope(key: str, where: tuple, r: _Reader) -> tuple[str, str]:
    scope, _, name = key.rpartition(".")
    if scope not in {"model", "loss", ""} or not name:
        raise r.fail(where, f"{key!r} is not model.KEY, loss.KEY or a protocol KEY")
    return scope, name


def _rows(spec: Any, r: _Reader, path: tuple) -> list[tuple[Row, tuple]]:
    r.typed(spec, list, path, "an array of tables ([[rows]])")
    rows: list[tuple[Row, tuple]] = []
    for i, item in enumerate(spec, 1):
        where = (*path, i)
        r.keys(r.typed(item, dict, where, "a table"), _ROW, where)
        if "label" not in item:
            raise r.fail(where, "needs a label (the table's row name)")
        label = r.typed(item["label"], str, (*where, "label"), "a string")
        if label in {row.label for row, _ in rows}:
            raise r.fail((*where, "label"), f"label {label!r} is used by an earlier row")
        pruned = item.get("pruned_from")
        if pruned is not None:
            r.typed(pruned, str, (*where, "pruned_from"), "a row label")
            if extra := [k for k in ("network", "loss", "params") if k in item]:
                raise r.fail((*where, extra[0]), "a pruned row takes only label and pruned_from")
            if pruned not in {row.label for row, _ in rows}:
                earlier = [row.label for row, _ in rows]
                raise r.fail((*where, "pruned_from"), _unknown("earlier row", pruned, earlier))
            rows.append((Row(label, pruned_from=pruned), where))
            continue
        for key in ("network", "loss"):
            if key not in item:
                raise r.fail(where, f"needs a {key} (or pruned_from, for a pruned row)")
            r.typed(item[key], str, (*where, key), "a string")
        routed: dict[str, dict[str, Any]] = {"model": {}, "loss": {}, "": {}}
        params = r.typed(item.get("params", {}), dict, (*where, "params"), "a table")
        for key, value in params.items():
            scope, name = _param_scope(key, (*where, "params", key), r)
            routed[scope][name] = value
        rows.append(
            (
                Row(
                    label,
                    item["network"],
                    item["loss"],
                    routed["model"],
                    None,
                    routed["loss"],
                    routed[""],
                ),
                where,
            )
        )
    return rows


def _fill(row: Row, values: dict[str, Any], where: tuple, r: _Reader, dataset: str | None) -> Row:
    """Replace ``{NAME}`` in the row's strings by the dataset's value (``None``: keep the name)."""

    def fill(text: str, key: str) -> str:
        def value(match: re.Match) -> str:
            name = match.group(1)
            if dataset is None:
                return match.group(0)
            if name not in values:
                raise r.fail(
                    (*where, key),
                    f"{{{name}}} has no value for dataset {dataset!r}; add "
                    f"[per_dataset.{dataset}] values = {{ {name} = … }}",
                )
            found = values[name]
            return f"{found:g}" if isinstance(found, float) else str(found)

        return _PLACEHOLDER.sub(value, text)

    return Row(
        fill(row.label, "label"),
        fill(row.model, "network"),
        fill(row.loss, "loss"),
        row.model_params,
        row.pruned_from and fill(row.pruned_from, "pruned_from"),
        row.loss_params,
        row.overrides,
    )


def _check_row(row: Row, where: tuple, r: _Reader) -> None:
    """The row's network, loss terms and parameter keys exist (values: focalbench.checks)."""
    if row.pruned_from is not None:
        return
    from focalbench.checks import loss_param_names
    from focalbench.losses import LOSSES
    from focalbench.losses.build import BOUNDARY_TERMS
    from focalbench.models import MODELS
    from focalbench.protocols import overridable_fields

    if row.model not in MODELS:
        raise r.fail((*where, "network"), _unknown("network", row.model, MODELS.names()))
    try:
        terms = parse_loss_spec(row.loss)
    except FocalbenchError as exc:
        raise r.fail((*where, "loss"), str(exc)) from None
    losses = [*LOSSES.names(), *BOUNDARY_TERMS]
    for term, _ in terms:
        if term not in losses:
            raise r.fail((*where, "loss"), _unknown("loss", term, sorted(losses)))
    checks = (
        ("model", row.model_params, MODELS.get(row.model).allowed()),
        ("loss", row.loss_params, loss_param_names(row.loss)),
        ("", row.overrides, overridable_fields()),
    )
    for scope, given, valid in checks:
        for key in given:
            if key not in valid:
                full = f"{scope}.{key}" if scope else key
                raise r.fail((*where, "params", full), _unknown("parameter", full, sorted(valid)))


def _swept(rows: list[Row], sweep: list[tuple[str, list[Any]]]) -> list[Row]:
    """Every sweep point × every row; the label shows the point (``UFL [loss.gamma=0.2]``)."""
    if not sweep:
        return rows
    out = []
    for point in itertools.product(*(values for _, values in sweep)):
        shown = ", ".join(f"{key}={value}" for (key, _), value in zip(sweep, point, strict=True))
        for row in rows:
            if row.pruned_from is not None:
                out.append(
                    Row(f"{row.label} [{shown}]", pruned_from=f"{row.pruned_from} [{shown}]")
                )
                continue
            routed = {
                "model": dict(row.model_params),
                "loss": dict(row.loss_params),
                "": dict(row.overrides),
            }
            for (key, _), value in zip(sweep, point, strict=True):
                scope, _, name = key.rpartition(".")
                routed[scope][name] = value
            out.append(
                Row(
                    f"{row.label} [{shown}]",
                    row.model,
                    row.loss,
                    routed["model"],
                    None,
                    routed["loss"],
                    routed[""],
                )
            )
    return out


# ----------------------------------------------------------------------------------------------
# Study → file


def dump_study(study: Study, dataset: str | None) -> str:
    """The study for ``dataset`` (comma-separated) as a study file that plans the same cells."""
    datasets = split_names(dataset) or list(study.default_datasets)
    if not datasets:
        raise FocalbenchError("--print-study-file writes the rows of a dataset: add --dataset NAME")
    lines = [f"name = {_value(study.name)}", f"protocol = {_value(study.protocol)}"]
    if study.seeds:
        lines.append(f"seeds = {_value(list(study.seeds))}")
    if study.folds:
        lines.append(f"folds = {study.folds}")
    lines += [f"datasets = {_value(datasets)}", "", "[table]"]
    table = study.table
    lines += [f"title = {_value(table.title)}", f"layout = {_value(table.layout.value)}"]
    if table.baseline is not None:
        lines.append(f"baseline = {_value(table.baseline)}")
    if table.metrics is not None:
        lines.append(f"metrics = {_value(list(table.metrics))}")
    by_dataset = {ds: study.rows(ds) for ds in datasets}
    if all(rows == by_dataset[datasets[0]] for rows in by_dataset.values()):
        lines += _row_tables("rows", by_dataset[datasets[0]])
    else:
        for ds, rows in by_dataset.items():
            lines += _row_tables(f"per_dataset.{_key(ds)}.rows", rows)
    return "\n".join(lines) + "\n"


def _row_tables(header: str, rows: list[Row]) -> list[str]:
    out = []
    for row in rows:
        out += ["", f"[[{header}]]", f"label = {_value(row.label)}"]
        if row.pruned_from is not None:
            out.append(f"pruned_from = {_value(row.pruned_from)}")
            continue
        out += [f"network = {_value(row.model)}", f"loss = {_value(row.loss)}"]
        params = {
            **{f"model.{k}": v for k, v in row.model_params.items()},
            **{f"loss.{k}": v for k, v in row.loss_params.items()},
            **row.overrides,
        }
        if params:
            out.append(f"params = {_value(params)}")
    return out


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


def _value(value: Any) -> str:
    """A TOML value: strings as basic strings, lists as arrays, dicts as inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise FocalbenchError(f"cannot write {value!r} in a study file")
