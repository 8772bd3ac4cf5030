"""A task is one module: a toy task written outside the package, registered with one call, trains end
to end through the CLI (validate, train, predict, eval) without any other hf-tuner file knowing it."""
from __future__ import annotations

import json
import random
import sys
import textwrap

import pandas as pd
import pytest

from conftest import assert_clean_error

TOY_MODULE = '''
"""A toy task: text regression (a score per text), from a module outside hf_tuner. It reuses the
sequence-classifier family and brings its own data part and objective."""
from typing import Any

from pydantic import Field

from hf_tuner.config import DataConfig
from hf_tuner.tasks.base import CardInfo, DataPart, Objective, Task, load_checked
from hf_tuner.tasks.parts.families import TextHeadFamily


class ScoreData(DataConfig):
    text_column: str = "text"
    score_column: str = "score"
    max_length: int = Field(32, ge=8)


class ScoredTexts(DataPart):
    schema = ScoreData

    def load(self, job):
        d = job.cfg.data
        return load_checked(job, {"text_column": d.text_column, "score_column": d.score_column})

    def training_texts(self, job, splits):
        yield from splits.train[job.cfg.data.text_column]

    def preprocess(self, job, splits, processing):
        d = job.cfg.data

        def tokenize(batch):
            out = processing(batch[d.text_column], truncation=True, max_length=d.max_length)
            out["labels"] = [float(s) for s in batch[d.score_column]]
            return out

        return splits.map(lambda name, ds: ds.map(tokenize, batched=True, remove_columns=ds.column_names))

    def collator(self, job, processing):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(processing)

    def encode_inputs(self, job, loaded, batch):
        return loaded.processing(batch, padding=True, truncation=True, return_tensors="pt")


def mse(pred):
    import numpy as np

    diff = np.asarray(pred.predictions).reshape(-1) - np.asarray(pred.label_ids).reshape(-1)
    return {"mse": float(np.mean(diff ** 2))}


class Regression(Objective):
    primary_metric = "mse"

    def model_config(self, job):
        return {"num_labels": 1, "problem_type": "regression"}

    def trainer_kwargs(self, job, model, processing):
        return {**super().trainer_kwargs(job, model, processing), "compute_metrics": mse}

    def predict(self, job, loaded, inputs, **options: Any):
        import torch

        with torch.no_grad():
            scores = loaded.model(**job.data.encode_inputs(job, loaded, inputs)).logits[:, 0].tolist()
        return [{"input": text, "score": round(score, 4)} for text, score in zip(inputs, scores)]

    def format_result(self, result):
        return f"{result['input']}\\tscore {result['score']:.3f}"


TASK = Task(
    name="toy-text-regression",
    family=TextHeadFamily(),
    data=ScoredTexts(),
    objective=Regression(),
    card=CardInfo("text-classification", "Text Regression"),
)
'''


WORDS = "the a movie day food service weather team song book was is really quite".split()


@pytest.fixture
def toy_task(tmp_path, monkeypatch):
    """The toy module on sys.path and registered with one `register` call (undone after the test)."""
    from hf_tuner import tasks

    (tmp_path / "toy_tasks.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(tasks, "REGISTRY", dict(tasks.REGISTRY))
    tasks.register("toy-text-regression", "toy_tasks:TASK")
    yield "toy-text-regression"
    tasks.recipe_model.cache_clear()
    sys.modules.pop("toy_tasks", None)


@pytest.fixture
def toy_recipe(tmp_path):
    """Texts scored 1 when they contain 'great', else 0 (so a constant guess has MSE = variance)."""
    rng = random.Random(0)
    rows = []
    for i in range(480):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 7))]
        good = i % 2 == 0
        if good:
            words.insert(rng.randrange(len(words) + 1), "great")
        rows.append({"text": " ".join(words), "score": 1.0 if good else 0.0})
    pd.DataFrame(rows).to_csv(tmp_path / "scores.csv", index=False)
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        task: toy-text-regression
        model:
          from_scratch: {{model_type: bert, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 2,
                         intermediate_size: 64, max_position_embeddings: 64}}
          tokenizer: {{train: true, type: wordpiece, vocab_size: 200}}
        data: {{train: '{tmp_path / "scores.csv"}', validation_size: 0.25}}
        training: {{num_train_epochs: 6, learning_rate: 1.0e-3, per_device_train_batch_size: 16, save_strategy: 'no'}}
        """))
    return recipe


@pytest.mark.slow
def test_toy_task_trains_predicts_and_evaluates_end_to_end(cli, toy_task, toy_recipe, tmp_path):
    result = cli("validate", toy_recipe)
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    result = cli("train", toy_recipe, "-o", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["task"] == "toy-text-regression"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "config.yaml", "metrics.json", "README.md"):
        assert (out / name).is_file(), name
    # the scores are half 0, half 1: always guessing the mean gives MSE 0.25; the model must beat it
    before, after = summary["metrics_before"]["mse"], summary["metrics"]["mse"]
    assert after < before and after < 0.125, (before, after)
    assert "pipeline_tag: text-classification" in (out / "README.md").read_text()

    result = cli("predict", out, "the great movie", "the movie day")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    great, plain = (float(line.rsplit(" ", 1)[1]) for line in lines)
    assert lines[0].startswith("the great movie\tscore ") and great > plain + 0.5

    result = cli("eval", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["eval"]["validation"]["metrics"]["mse"] == pytest.approx(after, abs=1e-4)


def test_toy_task_data_keys_are_checked(cli, toy_task, toy_recipe):
    # its own data schema: another task's key is an error that says whose key it is
    assert_clean_error(cli("validate", toy_recipe, "data.label_column=x"), 2, "data.label_column",
                       "text-classification")
    assert_clean_error(cli("validate", toy_recipe, "data.score_colum=x"), 2, "did you mean 'score_column'")


def test_a_registered_target_that_is_not_a_task_is_a_clean_error(cli, monkeypatch, tmp_path):
    from hf_tuner import tasks

    monkeypatch.setattr(tasks, "REGISTRY", dict(tasks.REGISTRY))
    tasks.register("broken", "json:dumps")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: broken\nmodel: {name_or_path: x}\ndata: {train: x.csv}\n")
    assert_clean_error(cli("validate", recipe), 2, "which is not a hf_tuner.tasks.base.Task")
    tasks.recipe_model.cache_clear()


def test_which_runs_a_task_starts_from_is_the_kind_of_model_they_hold():
    from hf_tuner.tasks import get_task

    dpo, grpo, reward, text = (get_task(n) for n in ("dpo", "grpo", "reward-modeling", "text-classification"))
    causal = get_task("causal-lm")
    assert dpo.may_start_from(grpo) and grpo.may_start_from(dpo) and dpo.may_start_from(causal)  # all hold a causal LM
    assert causal.may_start_from(dpo)  # SFT again on top of a DPO model
    assert reward.may_start_from(dpo) and reward.may_start_from(text)
    assert not text.may_start_from(causal) and not dpo.may_start_from(text) and not text.may_start_from(reward)


def test_every_family_names_a_transformers_class_and_a_peft_task_type():
    """Families are values with settings: each names classes that exist (a setting in the wrong field,
    as a positional argument once put the peft task type in `processor`, fails here, not in predict)."""
    import peft
    import transformers

    from hf_tuner.tasks import get_task, task_names

    for name in task_names():
        family = get_task(name).family
        assert hasattr(transformers, family.auto_model) and hasattr(transformers, family.processor), (name, family)
        assert family.peft_task_type is None or hasattr(peft.TaskType, family.peft_task_type), (name, family)
