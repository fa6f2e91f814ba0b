"""Faults at the edges (issue 15), each on a real file system or a real socket, most through a real
`python -m focalbench` process: a tmpfs that fills, a read-only bind mount, a folder the user may
not write, a truncated checkpoint, a port that refuses and one that never answers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import focalbench
from focalbench import store
from focalbench.config import RunConfig
from focalbench.datasets import download as download_mod
from focalbench.engine import checkpoint
from focalbench.errors import FocalbenchError
from focalbench.store import DiskFault, atomic_write_json, atomic_write_text, free_space

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 2
TINY = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke", epochs=EPOCHS)
TRAIN = [
    "train",
    "--dataset",
    "sample",
    "--model",
    "unet",
    "--loss",
    "dice",
    "--protocol",
    "smoke",
    "--epochs",
    str(EPOCHS),
]


def focalbench_cli(
    *args: str, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """``python -m focalbench ARGS`` in a fresh process on the CPU, with the 2 threads conftest
    gives this one (so its sums run in the same order and compare bit-exactly)."""
    full = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "CUDA_VISIBLE_DEVICES": "",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "focalbench", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **kwargs,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The process failed as a user error: exit 2 and exactly one ``error:`` line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(
            f"this machine forbids `mount {' '.join(args)}` ({done.stderr.strip()}); "
            "the fault needs a real small or read-only file system"
        )


@pytest.fixture
def small_disk(tmp_path):
    """``mount(size)``: a real tmpfs of ``size`` bytes at ``tmp_path/disk`` (unmounted after)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = []

    def mount(size: int) -> Path:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
        mounted.append(folder)
        return folder

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def read_only(tmp_path):
    """A read-only bind mount of ``tmp_path/source`` at ``tmp_path/ro``: returns (source, ro)."""
    source, ro = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    ro.mkdir()
    _mount("--bind", str(source), str(ro))
    try:
        _mount("-o", "remount,bind,ro", str(ro))
        yield source, ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run of EPOCHS epochs straight through (the reference), and the same cell stopped
    by Ctrl-C after its last epoch's checkpoints, before the test (last.pt is epoch 2,
    last.previous.pt epoch 1)."""
    root = tmp_path_factory.mktemp("trained")
    reference = focalbench.train(
        TINY, results=root / "reference", progress=False, data_dir=root / "data"
    )

    def stop_after_2(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        focalbench.train(
            TINY,
            results=root / "stopped",
            progress=False,
            data_dir=root / "data",
            on_epoch_end=stop_after_2,
        )
    return Path(reference["run_dir"]), root / "stopped" / "runs" / TINY.key


def _copy_run(run_dir: Path, results: Path) -> Path:
    target = results / "runs" / run_dir.name
    target.mkdir(parents=True)
    for path in run_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _losses(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv")[["epoch", "train_loss", "val_loss", "val_dsc"]]


# ----------------------------------------------------------------------------- permissions (item 11)


@pytest.mark.parametrize(
    ("umask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]
)
def test_files_and_folders_honour_the_umask(tmp_path, umask, file_mode, folder_mode):
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "new" / "status.json", {"state": "done"})
        checkpoint.save(tmp_path / "new" / "last.pt", epoch=1)
    finally:
        os.umask(previous)
    assert (tmp_path / "new").stat().st_mode & 0o777 == folder_mode
    for name in ("status.json", "last.pt"):
        assert (tmp_path / "new" / name).stat().st_mode & 0o777 == file_mode, name


def test_a_trained_run_folder_is_readable_by_colleagues_under_umask_022(trained):
    reference, _ = trained
    if store._umask() != 0o022:
        pytest.skip(f"the tests run under umask {store._umask():03o}, not 022")
    modes = {p.name: p.stat().st_mode & 0o777 for p in reference.iterdir()}
    assert set(modes.values()) == {0o644}, modes
    assert reference.stat().st_mode & 0o777 == 0o755


# ----------------------------------------------------------------------------- disk faults (item 7)


def test_a_full_disk_is_one_line_with_the_free_space_and_keeps_the_previous_file(small_disk):
    disk = small_disk(256 * 1024)
    target = disk / "report.md"
    atomic_write_text(target, "the previous good table\n")
    (disk / "filler").write_bytes(b"\0" * (200 * 1024))  # what other jobs put on the disk
    with pytest.raises(DiskFault) as caught:
        atomic_write_text(target, "x" * (100 * 1024))
    message = str(caught.value)
    assert message.startswith(f"cannot write {target} (No space left on device; ")
    assert f"{free_space(disk)} free there" in message and "\n" not in message
    assert target.read_text() == "the previous good table\n"
    assert sorted(p.name for p in disk.iterdir()) == [
        "filler",
        "report.md",
    ]  # no temporary file left


def test_a_read_only_file_system_is_one_line_and_keeps_the_previous_file(read_only):
    source, ro = read_only
    (source / "metrics.json").write_text("{}\n")
    with pytest.raises(
        DiskFault,
        match=r"cannot write .*metrics\.json \(Read-only file system; .* free there\); "
        "write to a writable folder instead",
    ):
        atomic_write_json(ro / "metrics.json", {"test": 1})
    assert (source / "metrics.json").read_text() == "{}\n"


def test_a_folder_the_user_may_not_write_is_one_line():
    """EACCES needs a user without the right; root bypasses permissions, so the writing process
    drops to ``nobody`` when the tests run as root."""
    folder = Path(tempfile.mkdtemp(prefix="focalbench-theirs-", dir="/tmp"))  # tmp_path is 0700
    (folder / "table.md").write_text("theirs\n")
    folder.chmod(0o555)
    drop = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    script = (
        "from focalbench.store import atomic_write_text\n"
        f"atomic_write_text({str(folder / 'table.md')!r}, 'mine')\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            check=False,
            **drop,
        )
        assert (folder / "table.md").read_text() == "theirs\n"
    except PermissionError as exc:
        pytest.skip(f"cannot start a process as another user here ({exc})")
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
    if "ModuleNotFoundError" in done.stderr:
        pytest.skip("the package is not readable by 'nobody' on this machine")
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"focalbench.store.DiskFault: cannot write {folder / 'table.md'} (Permission denied; "
    )
    assert last.endswith(
        "fix the folder's permissions or write elsewhere, then rerun the same command"
    )


def test_report_out_into_a_read_only_folder_is_one_line(trained, read_only, tmp_path):
    reference, _ = trained
    results = tmp_path / "results"
    _copy_run(reference, results)
    source, ro = read_only
    result = focalbench_cli("report", "--results", str(results), "--out", str(ro / "table.md"))
    line = one_error_line(result)
    assert f"cannot write {ro / 'table.md'} (Read-only file system; " in line
    assert not list(source.iterdir())


def test_training_that_cannot_save_a_checkpoint_stops_cleanly_and_resumes(
    trained, small_disk, tmp_path
):
    """Room for two checkpoints: epoch 1 saves best.pt and last.pt, epoch 2's next one does not
    fit. The process stops with one line; epoch 1's last.pt is intact; with room again, the same
    cell resumes and matches the uninterrupted run."""
    reference, _ = trained
    size = (reference / "last.pt").stat().st_size
    disk = small_disk(2 * size + 512 * 1024)
    env = {"FOCALBENCH_DATA": str(tmp_path / "data")}
    result = focalbench_cli(*TRAIN, "--results", str(disk), env=env)
    line = one_error_line(result)
    run_dir = disk / "runs" / TINY.key
    assert (
        line.startswith(f"error: cannot write {run_dir}/") and "(No space left on device; " in line
    )
    assert "free there" in line
    assert checkpoint.load(run_dir / "last.pt")["epoch"] == 1
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    subprocess.run(["mount", "-o", f"remount,size={6 * size}", str(disk)], check=True)
    resumed = focalbench.train(TINY, results=disk, progress=False, data_dir=tmp_path / "data")
    assert resumed["state"] == "done"
    pd.testing.assert_frame_equal(_losses(run_dir), _losses(reference))


# ----------------------------------------------------------------------------- checkpoints (item 8)


def test_a_truncated_last_pt_resumes_from_the_previous_checkpoint_bit_exactly(trained, tmp_path):
    reference, stopped = trained
    results = tmp_path / "results"
    run_dir = _copy_run(stopped, results)
    data = (run_dir / "last.pt").read_bytes()
    (run_dir / "last.pt").write_bytes(data[: len(data) // 2])  # power loss mid-write
    result = focalbench_cli(
        *TRAIN, "--results", str(results), "--json", env={"FOCALBENCH_DATA": str(tmp_path / "d")}
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        (
            f"warning: {run_dir / 'last.pt'} is corrupt (truncated or torn: no checksum at its end, "
            "and torch.load fails with RuntimeError; kept as last.pt.corrupt); resuming from "
            "last.previous.pt (epoch 1)"
        )
    ]
    assert json.loads(result.stdout)["state"] == "done"
    pd.testing.assert_frame_equal(_losses(run_dir), _losses(reference))
    assert (run_dir / "last.pt.corrupt").stat().st_size == len(data) // 2


def test_two_bad_checkpoints_restart_from_epoch_0_saying_so(trained, tmp_path, capfd):
    reference, stopped = trained
    run_dir = _copy_run(stopped, tmp_path / "results")
    for name in ("last.pt", "last.previous.pt"):
        data = bytearray((run_dir / name).read_bytes())
        data[len(data) // 3] ^= (
            0xFF  # one flipped bit in the weights: torch.load alone would not notice
        )
        (run_dir / name).write_bytes(bytes(data))
    summary = focalbench.train(TINY, results=tmp_path / "results", progress=False)
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"warning: {run_dir / 'last.pt'} is corrupt (its SHA-256 does not match")
    assert line.endswith("kept as last.previous.pt.corrupt); restarting from epoch 0")
    assert summary["state"] == "done"
    pd.testing.assert_frame_equal(_losses(run_dir), _losses(reference))


def test_a_resume_puts_back_the_best_pt_of_the_epoch_it_resumes_from(tmp_path):
    """best.pt is written before last.pt. A crash between the two (epoch 3 improved, its best.pt
    written, its last.pt not) resumes from epoch 2, whose state names epoch 2 as the best: the
    epoch-3 best.pt is the abandoned epoch's and its previous copy (epoch 2's) is put back; a
    best.pt matching the state is left alone; with no best yet (0) an abandoned one is removed."""
    best = tmp_path / "best.pt"
    for epoch in (1, 2, 3):  # each epoch improved: best.pt is epoch 3's, its previous epoch 2's
        checkpoint.save_keeping_previous(best, epoch=epoch, model={"w": float(epoch)})
    checkpoint.restore_best(best, best_epoch=3)
    assert checkpoint.load(best)["epoch"] == 3  # it matches: untouched
    checkpoint.restore_best(best, best_epoch=2)
    assert checkpoint.load(best) == {"epoch": 2, "model": {"w": 2.0}}
    assert not checkpoint.previous_of(best).exists()  # moved back, not copied

    only = tmp_path / "only" / "best.pt"
    only.parent.mkdir()
    checkpoint.save_keeping_previous(only, epoch=1, model={})
    checkpoint.restore_best(only, best_epoch=0)  # epoch 1 abandoned before any best was kept
    assert not only.exists()


def test_a_checkpoint_stays_loadable_by_torch_and_a_flipped_byte_is_named(tmp_path):
    import torch

    path = tmp_path / "best.pt"
    checkpoint.save(path, epoch=4, model={"w": torch.arange(1000.0)})
    assert torch.load(path, weights_only=False)["epoch"] == 4  # the trailer does not hide the zip
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(
        checkpoint.CorruptCheckpoint, match=r"best\.pt is corrupt \(its SHA-256 does not match"
    ):
        checkpoint.load(path)


# ----------------------------------------------------------------------------- report (item 9)


def test_report_with_no_finished_run_fails_and_says_how_to_get_runs(trained, tmp_path):
    _, stopped = trained  # interrupted after epoch 2: status failed (interrupted), no metrics
    results = tmp_path / "results"
    _copy_run(stopped, results)
    line = one_error_line(focalbench_cli("report", "--results", str(results)))
    assert line == (
        f"error: nothing to report: no finished run in {results / 'runs'} (0 running, 1 failed, "
        "0 unreadable); finish runs with focalbench train or ablate first, or pass the folder "
        "holding them with --results DIR"
    )
    assert not (results / "reports").exists()  # no placeholder table


# ----------------------------------------------------------------------------- fetch without a network


def _refusing_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: nothing listens, the kernel refuses


def test_fetch_from_a_refusing_port_is_one_line_at_once(tmp_path):
    url = f"http://127.0.0.1:{_refusing_port()}/stage1_train.zip"
    tick = time.perf_counter()
    with pytest.raises(FocalbenchError) as caught:
        download_mod.download(url, tmp_path / "stage1_train.zip")
    assert time.perf_counter() - tick < 2.0  # no retries with back-off for a missing network
    assert str(caught.value) == (
        f"cannot reach {url} (Connection refused); check the network, or download "
        "the file elsewhere and pass it with --from PATH"
    )


def test_fetch_from_a_host_that_never_answers_gives_up_after_the_connect_timeout(
    tmp_path, monkeypatch
):
    """A listening socket whose accept queue is full drops new handshakes, like a dead route."""
    monkeypatch.setattr(download_mod, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        for client in queued:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/stage1_train.zip"
        tick = time.perf_counter()
        with pytest.raises(
            FocalbenchError, match=r"cannot reach .* \(no answer within 1 s\); .* --from PATH"
        ):
            download_mod.download(url, tmp_path / "stage1_train.zip")
        elapsed = time.perf_counter() - tick
        for client in queued:
            client.close()
    assert 0.9 < elapsed < 3.0, elapsed


def test_a_download_onto_a_full_disk_is_one_line_with_the_free_space(small_disk):
    """A real server on 127.0.0.1 sends 1 MiB into a 256 KiB tmpfs: the first local write error
    is final (no retries can free space), names the folder and the free space, and keeps the part."""
    import http.server
    import threading

    payload = bytes(range(256)) * 4096
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    disk = small_disk(256 * 1024)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(FocalbenchError) as caught:
            download_mod.download(f"http://127.0.0.1:{server.server_port}/a.zip", disk / "a.zip")
    finally:
        server.shutdown()
        server.server_close()
    message = str(caught.value)
    assert message.startswith(
        f"disk full while downloading to {disk}; free space or pass --data-dir DIR ("
    )
    assert (
        f"({free_space(disk)} free there), then rerun the same command to resume from byte "
        in message
    )
    assert (
        requests == ["/a.zip"] and (disk / "a.zip.part").exists() and not (disk / "a.zip").exists()
    )
