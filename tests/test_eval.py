"""`hf-tuner eval`: metrics of a trained model through its Task, with values we can compute by hand."""
from __future__ import annotations

import json
import shutil
import sys

import pytest

from conftest import assert_clean_error

TEXTS = [
    "I love this airline, best flight ever", "worst service, lost my bags again", "the crew was lovely",
    "delayed for five hours and nobody cared", "thanks for the upgrade!", "never flying with you again",
    "great food and friendly staff", "rude agent at the gate", "smooth landing, happy customer",
    "my seat was broken", "what a wonderful trip", "cancelled flight, no refund",
]


def predictions(run_dir, texts, max_length=32) -> list[str]:
    """The run's own model on `texts`, in one padded batch (what eval's collator builds)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run_dir)
    model = AutoModelForSequenceClassification.from_pretrained(run_dir).eval()
    with torch.no_grad():
        ids = model(**tok(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")).logits.argmax(-1)
    return [model.config.id2label[int(i)] for i in ids]


@pytest.fixture(scope="module")
def run(tiny_lora_run, tmp_path_factory):
    """A private copy of the session's tiny run (eval writes into metrics.json and the card)."""
    dest = tmp_path_factory.mktemp("eval") / "run"
    shutil.copytree(tiny_lora_run, dest)
    return dest


@pytest.fixture(scope="module")
def known(run, tmp_path_factory):
    """Eval data labelled so that the model is right on exactly 8 of 12 rows."""
    preds = predictions(run, TEXTS)
    other = {"negative": "positive", "positive": "negative"}
    labels = [p if i < 8 else other[p] for i, p in enumerate(preds)]
    folder = tmp_path_factory.mktemp("data")
    jsonl = folder / "known.jsonl"
    jsonl.write_text("".join(json.dumps({"sentence": t, "label": l}) + "\n" for t, l in zip(TEXTS, labels)))
    csv = folder / "sst2_copy.csv"  # the glue-sst2 shape: sentence, integer label (0 negative, 1 positive)
    csv.write_text("sentence,label\n" + "".join(f'"{t}",{int(l == "positive")}\n' for t, l in zip(TEXTS, labels)))
    return preds, labels, jsonl, csv


@pytest.mark.slow
def test_eval_on_the_run_validation_split_matches_training(cli, run):
    result = cli("eval", run)
    assert result.exit_code == 0, result.output
    trained = json.loads((run / "metrics.json").read_text())
    out = json.loads((run / "eval" / "validation.json").read_text())
    assert out["rows"] == 32
    assert out["metrics"]["accuracy"] == pytest.approx(trained["validation"]["accuracy"])
    assert out["metrics"]["f1"] == pytest.approx(trained["validation"]["f1"])
    assert trained["eval"]["validation"]["metrics"] == out["metrics"]
    assert sum(map(sum, out["confusion_matrix"])) == 32
    assert (run / "eval" / "validation.confusion.png").stat().st_size > 1000
    assert "accuracy=" in result.stdout and "negative" in result.stdout


@pytest.mark.slow
def test_eval_accuracy_f1_and_report_equal_hand_computed_values(cli, run, known, tmp_path):
    from sklearn.metrics import confusion_matrix, f1_score

    preds, labels, jsonl, _ = known
    out_file = tmp_path / "known.json"
    result = cli("eval", run, "--data", jsonl, "--column", "text_column=sentence", "--output", out_file, "--batch-size", 16)
    assert result.exit_code == 0, result.output
    out = json.loads(out_file.read_text())
    assert out["rows"] == 12
    assert out["metrics"]["accuracy"] == pytest.approx(8 / 12)
    assert out["metrics"]["f1"] == pytest.approx(f1_score(labels, preds, average="macro"), abs=1e-6)
    names = out["labels"]
    assert names == ["negative", "positive"]
    assert out["confusion_matrix"] == confusion_matrix(labels, preds, labels=names).tolist()
    for name in names:
        assert out["per_class"][name]["support"] == labels.count(name)
    assert out_file.with_suffix(".confusion.png").is_file()
    # recorded in the run and shown on its model card
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval"]["known"]["metrics"]["accuracy"] == pytest.approx(8 / 12)
    card = (run / "README.md").read_text()
    assert "model-index:" in card and "| known (known.jsonl) |" in card and "0.6667" in card


@pytest.mark.slow
def test_benchmark_with_a_local_copy_maps_integer_labels(cli, run, known):
    _, _, _, csv = known
    result = cli("eval", run, "--benchmark", "glue-sst2", "--data", csv, "--max-samples", 12)
    assert result.exit_code == 0, result.output
    out = json.loads((run / "eval" / "glue-sst2.json").read_text())
    assert out["benchmark"] == "glue-sst2" and out["rows"] == 12
    assert out["metrics"]["accuracy"] == pytest.approx(8 / 12)
    card = (run / "README.md").read_text()
    assert "name: glue-sst2" in card


@pytest.mark.slow
def test_a_plain_model_folder_needs_task_and_columns(cli, run, known, tmp_path):
    _, _, jsonl, _ = known
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in run.iterdir():
        if f.is_file() and f.name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(f, plain / f.name)
    assert_clean_error(cli("eval", plain, "--data", jsonl), 2, "--task")
    result = cli("eval", plain, "--task", "text-classification", "--data", jsonl, "-c", "text_column=sentence", "-o", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["accuracy"] == pytest.approx(8 / 12)
    assert sorted(p.name for p in plain.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def test_list_benchmarks(cli):
    result = cli("eval", "--list-benchmarks")
    assert result.exit_code == 0, result.output
    for name in ("glue-sst2", "imdb", "ag_news", "xsum", "cnn_dailymail", "wmt16-ro-en", "cifar10", "beans"):
        assert name in result.stdout


def test_unknown_benchmark_suggests_the_closest(cli, tmp_path):
    assert_clean_error(cli("eval", tmp_path, "--benchmark", "glue-sts2"), 2, "unknown benchmark 'glue-sts2'", "did you mean 'glue-sst2'")


def test_bad_model_arguments_are_one_line(cli, tmp_path):
    assert_clean_error(cli("eval", tmp_path / "nope", "--data", "x.csv"), 2, "model not found")
    assert_clean_error(cli("eval", tmp_path, "--data", "x.csv"), 2, "neither an hf-tuner run folder")
    assert_clean_error(cli("eval"), 2, "missing MODEL")


@pytest.mark.slow
def test_eval_errors_on_a_run(cli, run, known):
    _, _, jsonl, _ = known
    assert_clean_error(cli("eval", run, "--benchmark", "xsum"), 2, "seq2seq benchmark")
    assert_clean_error(cli("eval", run, "--data", jsonl), 2, "column 'text' not found", "sentence")
    assert_clean_error(cli("eval", run, "--data", jsonl, "-c", "txt_column=sentence"), 2, "did you mean 'text_column'")
    assert_clean_error(cli("eval", run, "--split", "test"), 2, "no test split")
    assert_clean_error(cli("eval", run, "--task", "seq2seq"), 2, "contradicts the run")


def test_harness_without_lm_eval_says_how_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval -> ImportError
    assert_clean_error(cli("eval", tmp_path, "--harness", "hellaswag"), 2, "pip install 'hf-tuner[harness]'")
