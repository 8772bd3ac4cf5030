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

import pytest
import yaml

from conftest import assert_clean_error, sentiment_tweets_and_tiny_bert

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """200 positive / negative tweets and a tiny BERT saved as the starting checkpoint."""
    root = tmp_path_factory.mktemp("sweep")
    sentiment_tweets_and_tiny_bert(root)
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
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # optuna is creating its tables (or holds a write lock) right now
        return []


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


def start_sweep(recipe: Path, out: Path, log: Path, *args: str) -> subprocess.Popen:
    """`hf-tuner sweep` in a process of its own (so it can be killed), run from this checkout."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "hf_tuner", "sweep", str(recipe), "-o", str(out), *args],
                                env=env, stdout=handle, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_a_killed_sweep_continues_to_its_trials_and_best_yaml_trains_the_best_trial_again(cli, classifier, tmp_path):
    out = tmp_path / "sweep"
    args = ("--trials", "4", "--space", "training.learning_rate=loguniform(1e-4,3e-2)")
    proc = start_sweep(classifier, out, tmp_path / "log", *args)
    deadline = time.time() + 150
    try:  # kill -9 once two trials are done and the third is training
        while proc.poll() is None and time.time() < deadline:
            if trial_states(out / "study.db")[:3] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "RUNNING")] \
                    and (out / "trial-002.incomplete" / "summary.json").is_file():
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "log").read_text()[-3000:]
    finally:
        proc.kill()
        proc.wait()
    assert trial_states(out / "study.db") == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "RUNNING")]

    result = cli("sweep", classifier, "-o", out, *args)  # the same command again
    assert result.exit_code == 0, result.output[-3000:]
    states = dict(trial_states(out / "study.db"))
    assert states[2] == "FAIL" and len(states) == 5  # the killed trial is marked failed and its values run again ...
    finished = [n for n, s in states.items() if s in ("COMPLETE", "PRUNED")]
    assert finished == [0, 1, 3, 4]  # ... so four trials finished, two before the kill and two after
    with sqlite3.connect(out / "study.db") as con:
        params = dict(con.execute("SELECT t.number, p.param_value FROM trial_params p JOIN trials t USING (trial_id)"))
    assert params[3] == params[2]
    assert not (out / "trial-002.incomplete").exists()
    assert "trial 2 was interrupted" in result.stderr

    # the trials are ordinary run folders: `runs` lists them with the task's main metric
    listed = cli("runs", out, "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    summaries = {n: json.loads((out / f"trial-{n:03d}" / "summary.json").read_text())
                 for n in finished if states[n] == "COMPLETE"}
    for n, summary in summaries.items():
        assert rows[f"trial-{n:03d}"]["after"] == summary["metrics"]["accuracy"]
        config = yaml.safe_load((out / f"trial-{n:03d}" / "config.yaml").read_text())
        assert config["training"]["learning_rate"] == pytest.approx(float(params[n]))
        assert 1e-4 <= config["training"]["learning_rate"] <= 3e-2
    table = list(csv_rows(out / "results.csv"))
    assert [int(r["trial"]) for r in table] == [0, 1, 2, 3, 4] and table[2]["state"] == "fail"
    assert all(float(table[n]["accuracy"]) == summaries[n]["metrics"]["accuracy"] for n in summaries)
    assert (out / "optimization_history.png").is_file()
    assert "results.csv" in result.stdout and "best: trial" in result.stdout

    # best.yaml is the recipe with the best trial's learning rate (best by the trial folders' own summaries) ...
    top = max(s["metrics"]["accuracy"] for s in summaries.values())
    best_text = (out / "best.yaml").read_text()
    best_rate = yaml.safe_load(best_text)["training"]["learning_rate"]
    best = next(n for n, s in summaries.items() if s["metrics"]["accuracy"] == top
                and yaml.safe_load((out / f"trial-{n:03d}" / "config.yaml").read_text())["training"]["learning_rate"] == best_rate)
    trial_config = yaml.safe_load((out / f"trial-{best:03d}" / "config.yaml").read_text())
    assert yaml.safe_load(best_text)["training"].get("seed", 42) == trial_config["training"]["seed"]
    assert best_text.startswith(f"# best trial {best} of sweep sweep (accuracy ")
    # ... and training it again (same seed) gives that trial's metrics
    again = cli("train", out / "best.yaml", "-o", tmp_path / "again")
    assert again.exit_code == 0, again.output[-3000:]
    metrics = json.loads((tmp_path / "again" / "summary.json").read_text())["metrics"]
    for key in ("accuracy", "f1", "loss"):
        assert metrics[key] == pytest.approx(summaries[best]["metrics"][key], abs=1e-5), key


def csv_rows(path: Path):
    import csv

    with open(path, newline="") as handle:
        yield from csv.DictReader(handle)


@pytest.fixture(scope="module")
def language_model(data):
    """A causal LM built from scratch: 12 steps, evaluated every 3 (perplexity: lower is better)."""
    path = data / "lm.yaml"
    path.write_text(yaml.safe_dump({
        "task": "causal-lm",
        "model": {"from_scratch": {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64},
                  "tokenizer": {"train": True, "vocab_size": 300}},
        "data": {"train": str(data / "tweets.jsonl"), "text_column": "text", "max_train_samples": 96,
                 "max_eval_samples": 32, "max_length": 32},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "save_strategy": "no",
                     "eval_strategy": "steps", "eval_steps": 3, "logging_steps": 3,
                     "seed": 2},  # it seeds the sampler too: this one draws 3e-3, 1e-7, 3e-3, 1e-7
        "eval": {"before_training": False},
    }))
    return path


@pytest.mark.slow
def test_the_median_pruner_stops_a_trial_that_lags_at_an_evaluation(cli, language_model, tmp_path):
    """A learning rate of 1e-7 leaves the model as it started: once a trial at 3e-3 completed, a 1e-7 trial's
    perplexity at its first evaluation is worse than the completed trials' median there, and it is pruned."""
    import optuna

    out = tmp_path / "sweep"
    result = cli("sweep", language_model, "-o", out, "--trials", "4", "--startup-trials", "1",
                 "--space", "training.learning_rate=choice(3e-3,1e-7)")
    assert result.exit_code == 0, result.output[-3000:]
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # the task's: perplexity, lower is better
    trials = study.get_trials()
    assert len(trials) == 4
    good_done = False
    for t in trials:
        rate = t.params["training.learning_rate"]
        if rate == 1e-7 and good_done:
            assert t.state == optuna.trial.TrialState.PRUNED, t.number
            assert list(t.intermediate_values) == [3]  # stopped at its first evaluation
            summary = json.loads((out / f"trial-{t.number:03d}.incomplete" / "summary.json").read_text())
            assert summary["status"] == "pruned" and "pruned at step 3: perplexity" in summary["error"]
            assert not (out / f"trial-{t.number:03d}.incomplete" / "checkpoints").exists()
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE, t.number
            # what was reported is the Trainer's own evaluation at each step, and the value the run's folder keeps
            history = json.loads((out / f"trial-{t.number:03d}" / "log_history.json").read_text())
            evaluated = {h["step"]: h["eval_perplexity"] for h in history if "eval_perplexity" in h}
            assert t.intermediate_values == pytest.approx(evaluated) and sorted(evaluated) == [3, 6, 9, 12]
            summary = json.loads((out / f"trial-{t.number:03d}" / "summary.json").read_text())
            assert t.value == summary["metrics"]["perplexity"]
            good_done = good_done or rate == 3e-3
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    listed = {r["name"]: r["status"] for r in json.loads(cli("runs", out, "--json").stdout)}
    assert sorted(listed.values()).count("pruned") == sum(t.state.name == "PRUNED" for t in trials)
    assert "pruned" in (out / "results.csv").read_text()
