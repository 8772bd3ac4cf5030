"""`hf-tuner runs` and `runs compare` on real run folders made by tiny trainings: a completed
classifier, a completed causal LM (another task), a run that failed during training and one
interrupted by SIGTERM; the status of a killed run is checked against its lock."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import assert_clean_error, sentiment_tweets_and_tiny_bert

BIN = str(Path(sys.executable).parent / "hf-tuner")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/: `classifier` (completed), `lm` (completed, causal-lm), `broken.incomplete` (failed at
    step 3), `stopped.incomplete` (SIGTERM once a checkpoint is complete)."""
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    root = tmp_path_factory.mktemp("runs_cmd")
    sentiment_tweets_and_tiny_bert(root)
    classifier = {
        "task": "text-classification",
        "model": {"name_or_path": str(root / "base")},
        "data": {"train": str(root / "tweets.jsonl"), "max_train_samples": 96, "max_eval_samples": 32, "max_length": 32},
        "training": {"learning_rate": 1e-3, "num_train_epochs": 2, "per_device_train_batch_size": 8,
                     "save_strategy": "steps", "save_steps": 2, "save_total_limit": 1, "eval_strategy": "epoch",
                     "logging_steps": 2},
    }
    (root / "classifier.yaml").write_text(yaml.safe_dump(classifier))
    lm = {
        "task": "causal-lm",
        "model": {"from_scratch": {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64},
                  "tokenizer": {"train": True, "vocab_size": 300}},
        "data": {"train": str(root / "tweets.jsonl"), "text_column": "text", "max_train_samples": 96,
                 "max_eval_samples": 32, "max_length": 32},
        "training": {"learning_rate": 2e-3, "num_train_epochs": 1, "per_device_train_batch_size": 16,
                     "save_strategy": "no", "logging_steps": 2},
    }
    (root / "lm.yaml").write_text(yaml.safe_dump(lm))
    folder = root / "runs"
    runner = CliRunner()

    def train(recipe: str, out: str, *extra: str):
        return runner.invoke(app, ["train", str(root / recipe), "-o", str(folder / out), *extra])

    result = train("classifier.yaml", "classifier")
    assert result.exit_code == 0, result.output
    result = train("lm.yaml", "lm")
    assert result.exit_code == 0, result.output

    import transformers

    original = transformers.Trainer.training_step

    def failing(self, *args, **kwargs):  # a failure mid-training (what an out-of-memory error looks like to a run)
        if self.state.global_step >= 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, *args, **kwargs)

    transformers.Trainer.training_step = failing
    try:
        result = train("classifier.yaml", "broken", "training.learning_rate=5e-4")
    finally:
        transformers.Trainer.training_step = original
    assert result.exit_code == 1, result.output

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen([BIN, "train", str(root / "classifier.yaml"), "-o", str(folder / "stopped"),
                             "method.name=lora", "training.num_train_epochs=20"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # any complete checkpoint: with save_total_limit 1, checkpoint-2 lives only until checkpoint-4 replaces it
    checkpoints = folder / "stopped.incomplete" / "checkpoints"
    deadline = time.time() + 180
    while not any(checkpoints.glob("checkpoint-*/trainer_state.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    return folder


@pytest.mark.slow
def test_runs_lists_every_run_newest_first_with_status_and_main_metric(cli, runs):
    result = cli("runs", runs, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"classifier", "lm", "broken.incomplete", "stopped.incomplete"}
    assert [r["name"] for r in json.loads(result.stdout)] == ["stopped.incomplete", "broken.incomplete", "lm", "classifier"]
    assert {n: r["status"] for n, r in rows.items()} == {
        "classifier": "completed", "lm": "completed", "broken.incomplete": "failed", "stopped.incomplete": "interrupted"}
    assert rows["broken.incomplete"]["staging"] and not rows["classifier"]["staging"]
    # the main metric is the task's: accuracy for a classifier, perplexity for a language model
    summary = json.loads((runs / "classifier" / "summary.json").read_text())
    assert rows["classifier"]["metric"] == "accuracy"
    assert rows["classifier"]["before"] == summary["metrics_before"]["accuracy"]
    assert rows["classifier"]["after"] == summary["metrics"]["accuracy"]
    assert rows["classifier"]["training_s"] == summary["train"]["runtime_s"] > 0
    lm = json.loads((runs / "lm" / "summary.json").read_text())
    assert rows["lm"]["metric"] == "perplexity" and rows["lm"]["after"] == lm["metrics"]["perplexity"]
    assert rows["lm"]["after"] < rows["lm"]["before"]  # it learned something: an untrained LM is near the vocabulary size
    # unfinished runs: measured before training, nothing after; why they stopped
    assert rows["broken.incomplete"]["before"] is not None and rows["broken.incomplete"]["after"] is None
    assert "out of memory" in rows["broken.incomplete"]["error"]
    assert "SIGTERM" in rows["stopped.incomplete"]["error"]
    assert rows["stopped.incomplete"]["method"] == "lora"

    table = cli("runs", runs)
    assert table.exit_code == 0, table.output
    line = next(l for l in table.stdout.splitlines() if l.startswith("classifier "))
    assert "completed" in line and "accuracy" in line and f"{summary['metrics']['accuracy']:.4g}" in line
    assert "text-classification" in line and "full" in line


@pytest.mark.slow
def test_a_killed_run_is_not_running_unless_a_live_process_holds_its_lock(cli, runs, tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(runs / "stopped.incomplete", folder / "killed.incomplete")
    summary = json.loads((folder / "killed.incomplete" / "summary.json").read_text())
    summary.update(status="training")  # what SIGKILL leaves: the summary written when training started
    summary.pop("error")
    (folder / "killed.incomplete" / "summary.json").write_text(json.dumps(summary))
    lock = folder / "killed.lock"

    def status() -> dict:
        result = cli("runs", folder, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)[0]

    assert status()["status"] == "interrupted"  # no lock at all
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        row = status()
        assert row["status"] == "running" and str(sleeper.pid) in row["note"]
    finally:
        sleeper.kill()
        sleeper.wait()
    row = status()  # the same lock, its process gone: a killed run
    assert row["status"] == "interrupted" and "killed" in row["note"]
    lock.write_text(json.dumps({"pid": 1, "host": "another-host"}))
    row = status()
    assert row["status"] == "running" and "another-host" in row["note"] and "not checked" in row["note"]


@pytest.mark.slow
def test_compare_shows_only_differing_keys_metrics_side_by_side_and_plots(cli, runs, tmp_path):
    a, lm, broken, stopped = (str(runs / n) for n in ("classifier", "lm", "broken.incomplete", "stopped.incomplete"))
    result = cli("runs", "compare", a, lm, broken, stopped, "--json", "--plot", tmp_path / "cmp.png")
    assert result.exit_code == 0, result.output
    c = json.loads(result.stdout)
    config = c["config"]
    # independent expectation: the recipes differ in task, model, learning rate, epochs, method ...
    assert config["task"] == ["text-classification", "causal-lm", "text-classification", "text-classification"]
    assert config["training.learning_rate"] == [1e-3, 2e-3, 5e-4, 1e-3]
    assert config["method.name"] == ["full", "full", "full", "lora"]
    assert "data.text_column" not in config  # both tasks read `text`
    assert config["data.label_column"] == ["label", "(unset)", "label", "label"]
    # ... and in nothing else: every key shown differs, every key not shown is the same in all four
    flat = [_flatten(yaml.safe_load(Path(p, "config.yaml").read_text())) for p in (a, lm, broken, stopped)]
    for key in set().union(*flat):
        values = [f.get(key, "(unset)") for f in flat]
        assert (key in config) == (len({json.dumps(v) for v in values}) > 1), key
    metrics = c["metrics"]
    summary = json.loads(Path(a, "summary.json").read_text())
    assert metrics["validation/accuracy"][0] == summary["metrics"]["accuracy"]
    assert metrics["validation/accuracy"][1] == "n/a"  # a language model has no accuracy
    assert metrics["validation/perplexity"][0] == "n/a" and isinstance(metrics["validation/perplexity"][1], float)
    assert metrics["validation/accuracy"][2] is None  # the failed run measured nothing after training
    assert metrics["main metric"] == ["accuracy", "perplexity", "accuracy", "accuracy"]
    training = c["training"]
    assert training["trainable params"][0] == summary["trainable_params"]
    assert training["trainable params"][3] < training["total params"][3]  # LoRA
    assert training["steps"][0] == summary["train"]["global_steps"] == 24  # 96 rows / 8 x 2 epochs
    assert training["status"] == ["completed", "completed", "failed", "interrupted"]

    from PIL import Image

    with Image.open(tmp_path / "cmp.png") as image:
        assert image.size[0] > image.size[1] > 100
    from hf_tuner.runs import compare_runs, curves

    series = curves(compare_runs([a, lm]).runs[0])
    history = json.loads(Path(a, "log_history.json").read_text())
    assert series["train_loss"] == [(h["step"], h["loss"]) for h in history if "loss" in h]
    assert series["metric"] == "accuracy" and series["metric_points"][0] == (0, summary["metrics_before"]["accuracy"])
    assert series["metric_points"][-1][1] == summary["metrics"]["accuracy"]

    table = cli("runs", "compare", a, lm)
    assert table.exit_code == 0, table.output
    assert "recipe keys that differ:" in table.stdout and "n/a" in table.stdout
    assert "training.learning_rate" in table.stdout and "data.max_train_samples" not in table.stdout


def _flatten(data, prefix=""):
    if isinstance(data, dict) and data:
        out = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def test_compare_on_a_folder_that_is_not_a_run(cli, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.yaml").write_text("task: text-classification\n")
    (tmp_path / "other").mkdir()
    assert_clean_error(cli("runs", "compare", tmp_path / "notes", tmp_path / "other"), 2, "not an hf-tuner run folder")
    assert_clean_error(cli("runs", "compare", tmp_path / "missing", tmp_path / "other"), 2, "run folder not found")
    assert_clean_error(cli("runs", "compare", tmp_path / "notes"), 2, "at least two")
    assert_clean_error(cli("runs", tmp_path / "nope"), 2, "folder not found")
    assert_clean_error(cli("runs", tmp_path, "--plot", tmp_path / "x.png"), 2, "--plot goes with")
    assert not (tmp_path / "x.png").exists()


def test_runs_started_in_one_second_are_listed_newest_first(tmp_path):
    """Start times keep milliseconds: two runs started in the same second sort by start, not by
    name (a fast machine starts the next test run within the second the last one finished)."""
    from datetime import datetime

    from hf_tuner import rundir
    from hf_tuner.run import _now
    from hf_tuner.runs import list_runs

    first = _now()
    time.sleep(0.005)
    assert datetime.fromisoformat(_now()) > datetime.fromisoformat(first)
    for name, started in (("b-older", "2026-12-07T04:30:12.100+00:00"), ("a-newer", "2026-12-07T04:30:12.900+00:00"),
                          ("c-oldest", "2026-12-07T04:30:11+00:00")):  # a summary written before milliseconds
        (tmp_path / name).mkdir()
        rundir.write_summary(tmp_path / name, rundir.RunSummary(status="completed", started_at=started))
    assert [r.name for r in list_runs(tmp_path)] == ["a-newer", "b-older", "c-oldest"]


def test_runs_with_no_runs_folder_says_so(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("runs")
    assert result.exit_code == 0 and "no runs yet" in result.stdout
    (tmp_path / "runs").mkdir()
    result = cli("runs", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_a_lock_held_on_another_host_is_not_taken_over(tmp_path):
    from hf_tuner.errors import HfTunerError
    from hf_tuner.rundir import RunLock

    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "another-host"}))
    with pytest.raises(HfTunerError, match="cannot be checked from here, so the lock is not taken over") as caught:
        with RunLock(tmp_path / "run"):
            pass
    assert str(lock) in str(caught.value) and "delete the lock file" in str(caught.value)
    assert json.loads(lock.read_text())["host"] == "another-host"
