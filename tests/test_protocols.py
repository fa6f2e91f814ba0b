"""Protocols: the papers' numbers, the merge order, and errors that name the fix."""

import pytest

from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.protocols import (
    Checkpoint,
    Init,
    Normalization,
    Optimizer,
    Schedule,
    get_protocol,
    list_protocols,
    resolve,
)


def _config(protocol="paper000", **kw):
    return RunConfig(dataset="sample", model="unet", loss="dice", protocol=protocol, **kw)


def test_every_recipe_is_registered():
    assert list_protocols() == ["paper000", "paper001", "paper002", "paper003", "smoke"]


def test_paper000_is_section_2_4():
    p = get_protocol("paper000")
    assert (p.optimizer, p.lr, p.batch_size) == (Optimizer.adam, 1e-3, 1)
    assert (p.schedule, p.plateau_factor, p.plateau_patience, p.early_stopping) == (
        Schedule.plateau,
        0.1,
        25,
        50,
    )
    assert (p.normalization, p.init) == (
        Normalization.zscore_image,
        Init.xavier_uniform,
    )  # MIScnn z-score
    a = p.augmentation
    assert a.scale and a.rotation_deg and a.mirror and a.elastic_alpha and a.brightness


def test_papers_001_to_003_follow_their_experiment_sections():
    p1, p2, p3 = (get_protocol(n) for n in ("paper001", "paper002", "paper003"))
    assert (
        p1.plateau_factor,
        p1.plateau_patience,
        p1.plateau_threshold,
        p1.epochs,
        p1.batch_size,
    ) == (0.5, 5, 1e-3, 80, 8)
    assert (p2.batch_size, p2.epochs, p2.normalization, p2.augmentation, p2.early_stopping) == (
        8,
        50,
        Normalization.unit,
        None,
        None,
    )
    assert p2.test_checkpoint is Checkpoint.best
    assert (p3.optimizer, p3.lr, p3.momentum, p3.lr_decay, p3.augmentation) == (
        Optimizer.sgd,
        0.01,
        0.9,
        1e-6,
        None,
    )


def test_merge_order_protocol_then_settings_then_params_then_epochs():
    settings = {"size": (128, 128), "split": "random-64-16-20", "batch_size": 2, "ufl_gamma": 0.2}
    r = resolve(_config(overrides={"batch_size": 4, "size": [64, 96]}, epochs=3), settings)
    assert (r.batch_size, r.size, r.split, r.epochs) == (4, (64, 96), "random-64-16-20", 3)
    assert resolve(_config(), settings).batch_size == 2


def test_overrides_are_typed():
    r = resolve(
        _config(
            overrides={
                "schedule": "constant",
                "early_stopping": None,
                "augmentation": False,
                "lr": 1,
            }
        )
    )
    assert r.schedule is Schedule.constant and r.early_stopping is None and r.augmentation is None
    assert isinstance(r.lr, float)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"batchsize": 4}, "choose from: augmentation, batch_size"),
        ({"optimizer": "rmsprop"}, "choose from: adam, sgd"),
        ({"batch_size": 1.5}, "expected int"),
        ({"size": "big"}, "--param size=256x256"),
        ({"batch_size": 0}, "batch_size must be ≥ 1"),
    ],
)
def test_bad_overrides_say_what_to_write(overrides, needle):
    with pytest.raises(FocalbenchError, match=needle.replace("(", r"\(")) as info:
        resolve(_config(overrides=overrides))
    assert "\n" not in str(info.value)


def test_unknown_protocol_lists_the_valid_ones():
    with pytest.raises(FocalbenchError, match="did you mean 'smoke'.*paper000, paper001"):
        get_protocol("smok")


def test_paper002_learning_rate_steps_are_the_codes_keras_scheduler():
    from focalbench.protocols import lr_at_epoch

    p = get_protocol("paper002")
    assert p.schedule is Schedule.steps and p.batch_size == 8
    # focusnetpp.py: schedule(i) with Keras' 0-based epoch index i: <=15 1e-4, <=25 1e-5, <=40 1e-6
    expected = [
        1e-4 if i <= 15 else 1e-5 if i <= 25 else 1e-6 if i <= 40 else 1e-7 for i in range(50)
    ]
    assert [lr_at_epoch(p, epoch) for epoch in range(1, 51)] == expected


def test_paper003_checkpoints_on_validation_soft_dice_and_scores_at_native_size():
    from focalbench.protocols import Monitor, Resize, ScoreSize

    p = get_protocol("paper003")
    assert (p.monitor, p.score_size, p.resize) == (
        Monitor.val_soft_dice,
        ScoreSize.native,
        Resize.nearest,
    )
    assert get_protocol("paper000").resize is Resize.miscnn  # MIScnn's Resize subfunction
    assert get_protocol("smoke").monitor is Monitor.val_loss


def test_every_field_of_every_paper_protocol_names_its_source():
    from focalbench.protocols import field_sources, overridable_fields

    for name in ("paper000", "paper001", "paper002", "paper003"):
        sources = field_sources(name)
        assert set(sources) == set(overridable_fields()), name
        assert all(text.strip() for text in sources.values())
    assert field_sources("smoke") == {}


def test_reproduction_ledger_lists_every_field_with_its_value_and_source():
    from pathlib import Path

    from focalbench.protocols import field_sources, ledger_rows

    ledger = (Path(__file__).parents[1] / "docs" / "reproduction.md").read_text()
    for name in ("paper000", "paper001", "paper002", "paper003"):
        for row in ledger_rows(name):
            assert row in ledger, f"docs/reproduction.md lacks {row!r}; regenerate with ledger_rows"
        assert len(ledger_rows(name)) == len(field_sources(name))


def test_lr_steps_parse_from_the_command_line_and_are_checked():
    r = resolve(_config("smoke", overrides={"schedule": "steps", "lr_steps": "3:1e-3,5:1e-4"}))
    assert r.lr_steps == ((3, 1e-3), (5, 1e-4))
    for bad, needle in [("3-1e-3", "EPOCH:LR"), ("5:1e-3,3:1e-4", "increasing epochs")]:
        with pytest.raises(FocalbenchError, match=needle):
            resolve(_config("smoke", overrides={"schedule": "steps", "lr_steps": bad}))
    with pytest.raises(FocalbenchError, match="needs lr_steps"):
        resolve(_config("smoke", overrides={"schedule": "steps"}))
