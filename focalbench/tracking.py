"""Experiment trackers: a run's epochs, test scores and files mirrored into TensorBoard or MLflow.

The run folder stays the record of a run; a tracker is a view of it in the tool a user already
watches. One interface (:class:`Tracker`), a registry of implementations (``tensorboard``,
``mlflow``) and a no-op default, so the engine calls the same methods whether or not anything
is tracked. A tracker's package is an optional extra: asking for one that is not installed fails
before any training with the ``pip install`` line that fixes it.

Metric names are the run folder's column names with the first ``_`` read as a group separator
(:func:`metric_name`): ``train_loss`` → ``train/loss``, ``val_dsc`` → ``val/dsc``,
``focal_se2`` → ``focal/se2`` (the Focal weight W of position se2), ``lr`` → ``lr``; the test
scores of ``metrics.json`` are ``test/<score>``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from focalbench.errors import FocalbenchError
from focalbench.registry import Registry
from focalbench.store import atomic_write_json, read_json

NOT_LOGGED = ("epoch",)  # the step of every point, not a series of its own


def metric_name(column: str) -> str:
    """``val_dsc`` → ``val/dsc``: the first underscore opens a group (a TensorBoard section)."""
    group, _, name = column.partition("_")
    return f"{group}/{name}" if name else group


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → ``{"resolved.lr": "0.001", ...}``: MLflow params are flat strings."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def sample_panel(image: np.ndarray, mask: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """One test sample as an (H, 3W, 3) uint8 strip: input | ground truth | predicted p.

    ``image`` is (C, H, W) uint8 (grey shown for one channel, the first three for more),
    ``mask`` (H, W) in {0, 1}, ``prob`` (H, W) uint8 = 255·p.
    """
    shown = np.repeat(image[:1], 3, axis=0) if image.shape[0] == 1 else image[:3]
    grey = [np.repeat(a[None].astype(np.uint8), 3, axis=0) for a in (mask * 255, prob)]
    strip = np.concatenate([shown, *grey], axis=2)
    return np.ascontiguousarray(np.moveaxis(strip, 0, -1))


class Tracker:
    """The interface, and the no-op default: every call does nothing.

    The engine calls ``start`` once the run's config is resolved, ``log_epoch`` after each
    epoch's checkpoint is on disk, ``log_test`` after the test metrics are written,
    ``log_file`` for each file of the finished run, and ``close`` however the run ends (a
    tracker is its own context manager). A run that reached ``log_test`` finished; any other
    closes as failed.
    """

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, config: dict[str, Any], resolved: dict[str, Any]) -> None:
        return None

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        return None

    def log_test(
        self, epoch: int, metrics: dict[str, float], samples: dict[str, np.ndarray]
    ) -> None:
        return None

    def log_file(self, path: Path) -> None:
        return None

    def close(self) -> None:
        return None


class Trackers(Tracker):
    """Several trackers behind one (``--log tensorboard --log mlflow``)."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def _each(self, method: str, *args: Any) -> None:
        for tracker in self.trackers:
            getattr(tracker, method)(*args)

    def start(self, config, resolved):
        self._each("start", config, resolved)

    def log_epoch(self, epoch, row):
        self._each("log_epoch", epoch, row)

    def log_test(self, epoch, metrics, samples):
        self._each("log_test", epoch, metrics, samples)

    def log_file(self, path):
        self._each("log_file", path)

    def close(self):
        self._each("close")


class TensorBoardTracker(Tracker):
    """Event files in ``RUN/tensorboard/``: scalars per epoch, the config as text, test samples."""

    def __init__(self, run_dir: Path, results: Path, mlflow_uri: str | None, fresh: bool) -> None:
        self.log_dir = run_dir / "tensorboard"
        self.writer = None  # made by start: a run that fails to set up leaves no event file
        if fresh:  # --no-resume: the old attempt's curves would overlap the new ones
            shutil.rmtree(self.log_dir, ignore_errors=True)
        self.key = run_dir.name

    def start(self, config, resolved):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        text = json.dumps({"config": config, "resolved": resolved}, indent=2, default=str)
        # four-space indent: TensorBoard renders text as Markdown, this keeps it a code block
        code = "\n".join("    " + line for line in text.splitlines())
        self.writer.add_text("config", f"run `{self.key}`\n\n{code}", 0)

    def log_epoch(self, epoch, row):
        for column, value in row.items():
            if column not in NOT_LOGGED:
                self.writer.add_scalar(metric_name(column), float(value), epoch)
        self.writer.flush()

    def log_test(self, epoch, metrics, samples):
        for score, value in metrics.items():
            self.writer.add_scalar(f"test/{score}", float(value), epoch)
        for image_id, image, mask, prob in zip(
            samples["ids"], samples["images"], samples["masks"], samples["probs"], strict=False
        ):
            panel = sample_panel(image, mask, prob)
            self.writer.add_image(f"test_samples/{image_id}", panel, epoch, dataformats="HWC")

    def log_file(self, path):
        if path.suffix == ".png":  # TensorBoard keeps images, not files
            import matplotlib.image

            picture = (matplotlib.image.imread(path)[..., :3] * 255).astype(np.uint8)
            self.writer.add_image(f"figures/{path.stem}", picture, dataformats="HWC")

    def close(self):
        if self.writer is not None:
            self.writer.close()


class MlflowStore:
    """An MLflow tracking store and focalbench's experiment in it.

    The store is ``mlflow_uri``, else ``<results>/mlruns/mlflow.db`` (SQLite: MLflow 3 refuses its
    old plain-folder store by default) with the artifacts in ``<results>/mlruns/artifacts/``.
    ``ablate`` opens it once before its workers start (:func:`prepare_trackers`), so parallel
    cells never race to create the database or the experiment.
    """

    EXPERIMENT = "focalbench"

    def __init__(self, results: Path, mlflow_uri: str | None) -> None:
        from mlflow.tracking import MlflowClient

        self.artifacts: str | None = None  # the store's own default where a URI is given
        if mlflow_uri is None:
            store = (Path(results) / "mlruns").resolve()
            store.mkdir(parents=True, exist_ok=True)
            mlflow_uri, self.artifacts = (
                f"sqlite:///{store / 'mlflow.db'}",
                (store / "artifacts").as_uri(),
            )
        self.uri = mlflow_uri
        with self.errors():  # an unknown scheme fails here, before any training
            self.client = MlflowClient(tracking_uri=self.uri)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """A store MLflow cannot use is the user's to fix: one line naming the option."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            reason = str(exc).strip().splitlines()[0]
            message = f"MLflow store {self.uri}: {reason}; check --mlflow-uri"
            raise FocalbenchError(message) from None

    def experiment_id(self) -> str:
        """The experiment's id, created on first use."""
        with self.errors():
            experiment = self.client.get_experiment_by_name(self.EXPERIMENT)
            if experiment is not None:
                return experiment.experiment_id
            return self.client.create_experiment(self.EXPERIMENT, artifact_location=self.artifacts)


class MlflowTracker(Tracker):
    """One MLflow run per run folder, in experiment ``focalbench`` of the :class:`MlflowStore`,
    named by the cell's key. The MLflow run id is kept in ``RUN/mlflow.json``, so a
    resumed run continues the same MLflow run in the same store.
    """

    def __init__(self, run_dir: Path, results: Path, mlflow_uri: str | None, fresh: bool) -> None:
        if fresh:  # --no-resume: a new MLflow run; the old one stays in the store
            (run_dir / "mlflow.json").unlink(missing_ok=True)
        self.run_dir = run_dir
        self.store = MlflowStore(results, mlflow_uri)
        self.uri = self.store.uri
        self.client = self.store.client
        self.run_id: str | None = None
        self.tested = False

    def _resumed_run_id(self) -> str | None:
        stored = self.run_dir / "mlflow.json"
        if not stored.exists():
            return None
        saved = read_json(stored)
        return saved["run_id"] if saved.get("tracking_uri") == self.uri else None

    def start(self, config, resolved):
        experiment_id = self.store.experiment_id()  # the first call that reaches the store
        self.run_id = self._resumed_run_id()
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return
        tags = {
            f"focalbench.{k}": str(config[k])
            for k in ("dataset", "model", "loss", "protocol", "seed")
        }
        run = self.client.create_run(experiment_id, run_name=self.run_dir.name, tags=tags)
        self.run_id = run.info.run_id
        atomic_write_json(
            self.run_dir / "mlflow.json", {"tracking_uri": self.uri, "run_id": self.run_id}
        )
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten({"config": config, "resolved": resolved}).items()]
        for first in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[first : first + 100])

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step) for name, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_epoch(self, epoch, row):
        self._log_metrics({metric_name(c): v for c, v in row.items() if c not in NOT_LOGGED}, epoch)

    def log_test(self, epoch, metrics, samples):
        self._log_metrics({f"test/{score}": value for score, value in metrics.items()}, epoch)
        self.tested = True
        for image_id, image, mask, prob in zip(
            samples["ids"], samples["images"], samples["masks"], samples["probs"], strict=False
        ):
            self.client.log_image(
                self.run_id,
                sample_panel(image, mask, prob),
                artifact_file=f"test_samples/{image_id}.png",
            )

    def log_file(self, path):
        self.client.log_artifact(self.run_id, str(path))

    def close(self):
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status="FINISHED" if self.tested else "FAILED")


TRACKERS: Registry[tuple[str, Callable[[Path, Path, str | None, bool], Tracker]]] = Registry(
    "tracker"
)
TRACKERS.add("tensorboard", ("tensorboard", TensorBoardTracker))
TRACKERS.add("mlflow", ("mlflow", MlflowTracker))


def check_trackers(names: Iterable[str]) -> None:
    """Fail before any work on an unknown tracker or one whose package is not installed."""
    for name in names:
        package, _ = TRACKERS.get(name)
        if importlib.util.find_spec(package) is None:
            raise FocalbenchError(
                f"--log {name} needs the {package} package: pip install 'focalbench[{name}]'"
            )


def open_trackers(
    names: Sequence[str],
    run_dir: Path,
    results: Path,
    mlflow_uri: str | None = None,
    fresh: bool = False,
) -> Tracker:
    """The trackers asked for, as one; the no-op :class:`Tracker` when none is. ``fresh``: the
    run starts over (``--no-resume``), so each tracker drops what it kept of the old attempt."""
    check_trackers(names)
    if not names:
        return Tracker()
    return Trackers(
        [
            TRACKERS.get(name)[1](run_dir, results, mlflow_uri, fresh)
            for name in dict.fromkeys(names)
        ]
    )


def prepare_trackers(names: Sequence[str], results: Path, mlflow_uri: str | None = None) -> None:
    """Before a grid's workers start: check the trackers and create what they share (MLflow's
    database and experiment), so that one bad ``--mlflow-uri`` fails once, before any cell."""
    check_trackers(names)
    if "mlflow" in names:
        MlflowStore(results, mlflow_uri).experiment_id()
