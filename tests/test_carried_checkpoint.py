"""scripts/carried_checkpoint.py: which checkpoint a long run continues from, and the committed copy."""

import json

import pytest

from scripts import hh_adaptation_trial as trial
from scripts.carried_checkpoint import CarriedRun, step_of


def write_checkpoint(directory, step, weights=b"w"):
    directory.mkdir(parents=True)
    (directory / "position.json").write_text(json.dumps({"step": step}))
    (directory / "trainer_state.pt").write_bytes(b"state")
    (directory / "model").mkdir()
    (directory / "model" / "adapter_model.safetensors").write_bytes(weights)
    return directory


@pytest.fixture
def carried(tmp_path):
    return CarriedRun(tmp_path / "runs" / "x", tmp_path / "checkpoints" / "x")


def test_nothing_anywhere(carried):
    assert carried.resume_point() is None
    with pytest.raises(SystemExit, match="no checkpoint"):
        carried.snapshot()


def test_a_fresh_clone_continues_from_the_committed_copy(carried):
    write_checkpoint(carried.committed, 30)
    assert carried.resume_point() == carried.committed
    assert carried.snapshot() is None  # nothing newer here: the committed copy stays as it is
    assert step_of(carried.committed) == 30


def test_snapshot_copies_the_newest_local_checkpoint_and_the_curve(carried):
    write_checkpoint(carried.committed, 30, b"old")
    write_checkpoint(carried.run / "ray" / "run" / "checkpoint_000003", 30)
    newest = write_checkpoint(carried.run / "ray" / "run" / "checkpoint_000004", 40, b"new")
    (carried.run / "curve.jsonl").write_text('{"step": 40}\n')
    assert carried.resume_point() == newest
    assert carried.snapshot() == carried.committed
    assert step_of(carried.committed) == 40
    assert (carried.committed / "model" / "adapter_model.safetensors").read_bytes() == b"new"
    assert (carried.committed / "curve.jsonl").read_text() == '{"step": 40}\n'
    assert [p.name for p in carried.committed.parent.iterdir()] == ["x"]  # no temporary copy left behind


def test_an_incomplete_local_checkpoint_is_not_resumed_from(carried):
    write_checkpoint(carried.committed, 30)
    (write_checkpoint(carried.run / "ray" / "run" / "checkpoint_000009", 90) / "trainer_state.pt").unlink()
    assert carried.resume_point() == carried.committed


def test_a_trial_resumes_from_its_committed_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(trial, "ROOT", tmp_path)
    kept = write_checkpoint(tmp_path / "checkpoints" / "hh_from_stage1", 120)
    commands = []
    monkeypatch.setattr(trial, "run", commands.append)
    trial.train("hh_from_stage1")
    (cmd,) = commands
    assert cmd[cmd.index("train") + 1].endswith("train_configs/finetune.yaml")
    sets = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]
    assert f"resume_from={kept}" in sets and f"output_dir={tmp_path / 'runs' / 'hh_from_stage1'}" in sets
    commands.clear()
    trial.train("hh_adapt_gentle")  # nothing committed for it: a fresh start
    assert not any(arg.startswith("resume_from=") for arg in commands[0])


def test_the_default_resumes_from_its_committed_checkpoint(tmp_path, monkeypatch):
    from scripts import train_default

    kept = write_checkpoint(tmp_path / "checkpoints" / "default", 720)
    monkeypatch.setattr(train_default, "CARRIED", CarriedRun(tmp_path / "runs" / "default", kept))
    made = []
    monkeypatch.setattr(train_default, "make_data", made.append)  # the splits and the mix, made once
    commands = []
    monkeypatch.setattr(train_default.subprocess, "run", lambda cmd, **kw: commands.append(cmd))
    train_default.train([])
    (cmd,) = commands
    sets = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]
    assert f"resume_from={kept}" in sets and "max_steps=720" in sets
    # the shipped recipe trains on the hh_from_stage1 trial's mix, which train() makes first
    assert made == ["hh_from_stage1"] and f"data=[{trial.mix_path('hh_from_stage1')}]" in sets


def test_the_report_shows_the_curve_it_is_given(tmp_path, monkeypatch):
    from scripts import train_default

    shipped = tmp_path / "shipped_curve.jsonl"
    shipped.write_text('{"step": 720}\n')
    run = tmp_path / "runs" / "default"
    run.mkdir(parents=True)
    (run / "curve.jsonl").write_text('{"step": 10}\n')
    monkeypatch.setattr(train_default, "RUN", run)
    assert [r["step"] for r in train_default.curve_rows()] == [10]  # this machine's run first
    assert [r["step"] for r in train_default.curve_rows(shipped)] == [720]  # --report --curve PATH


def test_a_fresh_machine_appends_to_the_carried_curve(carried):
    write_checkpoint(carried.committed, 200)
    (carried.committed / "curve.jsonl").write_text('{"step": 100}\n{"step": 200}\n{"step": 300}\n')
    assert carried.start() == carried.committed
    # the points up to the checkpoint's step, for the run to append to (a point past it is not the run's)
    assert (carried.run / "curve.jsonl").read_text() == '{"step": 100}\n{"step": 200}\n'
    with open(carried.run / "curve.jsonl", "a") as f:
        f.write('{"step": 300}\n')
    write_checkpoint(carried.run / "ray" / "run" / "checkpoint_000030", 300)
    assert carried.start() == carried.run / "ray" / "run" / "checkpoint_000030"  # the run's own: its curve is left alone
    carried.snapshot()
    assert (carried.committed / "curve.jsonl").read_text() == '{"step": 100}\n{"step": 200}\n{"step": 300}\n'
