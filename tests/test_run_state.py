"""The run-state module: one owner of a run folder's layout, its status record and its lock.

The fixture ``tests/fixtures/results-0.1.0`` is a run folder written by focalbench 0.1.0
(``train --dataset sample --model unet --loss dice --protocol smoke --epochs 1``, checkpoints
and samples left out): this version must read it, resume-skip it and report it unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.grammar import parse_ints, parse_loss_spec, split_loss_list
from focalbench.report.runs import load_runs
from focalbench.run_state import Outcome, RunFolder, RunStatus, Status, run_cell, run_folder

FIXTURE = Path(__file__).parent / "fixtures" / "results-0.1.0"
KEY_010 = "sample-unet-dice-s0-6a618b05e0"


def test_a_run_folder_written_by_0_1_0_loads_with_every_status_field():
    folder = run_folder(FIXTURE, KEY_010)
    record = folder.status()
    assert record.state is Status.done
    assert (record.error, record.epoch, record.host) == (None, 1, "vm")
    assert record.device is None  # 0.1.0 did not record it
    assert record.started == "2026-12-02T05:53:18Z" and record.finished == "2026-12-02T05:53:19Z"
    # rewriting a 0.1.0 record gives back its exact content (no field invented, none lost)
    assert record.to_dict() == json.loads(folder.status_json.read_text())


def test_the_0_1_0_run_key_is_still_the_key_of_its_config():
    """Resuming depends on it: the folder name is the key of the stored config."""
    stored = run_folder(FIXTURE, KEY_010).config()
    assert RunConfig.from_dict(stored["config"]).key == KEY_010 == stored["key"]


def test_the_report_reads_a_0_1_0_run_folder(tmp_path):
    runs, skipped = load_runs(FIXTURE)
    assert skipped == []
    (run,) = runs
    assert run.state is Status.done and run.key == KEY_010
    per_image = (FIXTURE / "runs" / KEY_010 / "per_image.csv").read_text().splitlines()
    assert len(run.per_image) == len(per_image) - 1  # every test image
    assert run.value("dsc") == pytest.approx(run.per_image["dsc"].mean())


def test_the_report_command_builds_a_table_from_a_0_1_0_results_folder(tmp_path):
    import sys

    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    out = tmp_path / "table.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "focalbench",
            "report",
            "--results",
            str(results),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    dsc = load_runs(FIXTURE)[0][0].value("dsc")
    assert f"{dsc:.4f}"[:5] in out.read_text()  # the run's mean DSC is in the table


def test_a_finished_0_1_0_cell_is_skipped_not_retrained(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    config = RunConfig.from_dict(run_folder(results, KEY_010).config()["config"])

    def must_not_train(*args, **kwargs):
        raise AssertionError("a done cell was trained again")

    result = run_cell(config.to_dict(), str(results), train_fn=must_not_train)
    assert result.outcome is Outcome.skipped


def test_a_failure_record_keeps_what_train_wrote_and_names_the_device(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_status(Status.running, 3, device="cpu")
    started = folder.status().started
    folder.record_failure("RuntimeError: boom", "Traceback …", device="cuda:1")
    record = folder.status()
    assert (record.state, record.epoch, record.started) == (Status.failed, 3, started)
    assert (record.error, record.traceback, record.device) == (
        "RuntimeError: boom",
        "Traceback …",
        "cuda:1",
    )
    assert record.finished is not None


def test_fields_of_a_newer_version_survive_a_rewrite(tmp_path):
    record = RunStatus.from_dict({"state": "running", "epoch": 2, "heartbeat": 5})
    assert record.to_dict()["heartbeat"] == 5


def test_a_state_outside_running_done_failed_is_refused():
    with pytest.raises(ValueError):
        RunStatus.from_dict({"state": "paused"})


def test_status_json_is_named_by_the_run_state_module_only():
    package = Path(__file__).parents[1] / "focalbench"
    naming = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if "status.json" in p.read_text(encoding="utf-8")
    )
    assert naming == ["run_state.py"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ufl(gamma=0.2,delta=0.6),dice", ["ufl(gamma=0.2,delta=0.6)", "dice"]),
        ("dice, dice_ce+fdpt(eps=0.1)", ["dice", "dice_ce+fdpt(eps=0.1)"]),
        ("hybrid(w=[1,2]),ce", ["hybrid(w=[1,2])", "ce"]),
    ],
)
def test_losses_split_at_top_level_commas_only(text, expected):
    assert split_loss_list(text) == expected
    assert all(parse_loss_spec(spec) for spec in expected)  # each part is one readable spec


def test_the_loss_grammar_reads_terms_and_their_values():
    assert parse_loss_spec("ufl(gamma=0.2, delta=0.6)+fdpt(eps=0.1)") == [
        ("ufl", {"gamma": 0.2, "delta": 0.6}),
        ("fdpt", {"eps": 0.1}),
    ]
    with pytest.raises(FocalbenchError, match="is not KEY=VALUE"):
        parse_loss_spec("ufl(0.2)")


def test_integer_lists():
    assert parse_ints("0, 2", "--fold") == [0, 2] and parse_ints(3, "--fold") == [3]
    with pytest.raises(FocalbenchError, match="--fold takes integers"):
        parse_ints("a", "--fold")


def test_a_lock_wait_outlasts_a_holder_that_lets_go_and_not_one_that_keeps_it(tmp_path):
    """``lock(wait)``: a holder (another process's flock) that exits within the wait is waited
    for; one that keeps the lock past the wait leaves the caller without it (``busy``)."""
    import sys
    import time

    folder = run_folder(tmp_path, "cell")
    folder.path.mkdir(parents=True)
    hold = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(folder.lock_file)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(float(sys.argv[1]))\n"
    )
    for holds, wait, expected in ((1.0, 10.0, True), (10.0, 1.0, False)):
        holder = subprocess.Popen([sys.executable, "-c", hold, str(holds)], stdout=subprocess.PIPE)
        try:
            assert holder.stdout.readline() == b"held\n"
            tick = time.monotonic()
            with folder.lock(wait) as locked:
                waited = time.monotonic() - tick
            assert locked is expected
            assert (holds - 0.5 < waited < holds + 1.0) if expected else (wait <= waited < holds)
        finally:
            holder.kill()
            holder.wait()


def test_a_lost_cell_is_recorded_interrupted_only_if_it_had_begun(tmp_path):
    """settle_lost_cell: a cell that wrote a status is marked failed with an "interrupted; …"
    error (the next run resumes it, its epoch kept); one lost before it began writes nothing; a
    cell that had just finished is done."""
    from focalbench.run_state import settle_lost_cell

    begun = run_folder(tmp_path, "begun")
    begun.write_status(Status.running, 3)
    result = settle_lost_cell(str(tmp_path), "begun", "worker process died")
    assert result.outcome is Outcome.failed
    assert result.error == "interrupted; worker process died; rerun the same command to resume"
    record = begun.status()
    assert record.state is Status.failed and record.interrupted and record.epoch == 3

    never = settle_lost_cell(str(tmp_path), "never", "its Ray task was cancelled")
    assert never.error.startswith("interrupted; its Ray task was cancelled")
    assert not run_folder(tmp_path, "never").path.exists()

    finished = run_folder(tmp_path, "finished")
    finished.write_status(Status.done, 5)
    assert settle_lost_cell(str(tmp_path), "finished", "x").outcome is Outcome.trained
