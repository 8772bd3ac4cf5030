"""Fixes a new user hits on the way: a checkpoint whose classifier head has another size, labels
that do not match the data, the recipe list's order and what each recipe needs."""
from __future__ import annotations

import pandas as pd

from conftest import assert_clean_error


def test_a_checkpoint_with_another_head_size_loads_with_a_new_head(tmp_path):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertForSequenceClassification

    from hf_tuner.config import ModelConfig
    from hf_tuner.modeling import load_model

    config = AutoConfig.for_model("bert", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, num_labels=2, id2label={0: "NEG", 1: "POS"},
                                  label2id={"NEG": 0, "POS": 1})
    tuned = BertForSequenceClassification(config)
    tuned.save_pretrained(tmp_path / "sentiment")
    five = {str(i): i for i in range(1, 6)}
    notes: list[str] = []
    wanted = AutoConfig.from_pretrained(tmp_path / "sentiment", num_labels=5, id2label={v: k for k, v in five.items()},
                                        label2id=five)
    model = load_model(AutoModelForSequenceClassification, ModelConfig(name_or_path=str(tmp_path / "sentiment")), wanted,
                       notes=notes)
    assert model.classifier.out_features == 5
    # the body is the checkpoint's, not a fresh initialisation
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, tuned.bert.encoder.layer[0].attention.self.query.weight)
    assert len(notes) == 1 and "2 classes (NEG, POS)" in notes[0] and "5 classes" in notes[0]
    same: list[str] = []
    load_model(AutoModelForSequenceClassification, ModelConfig(name_or_path=str(tmp_path / "sentiment")),
               AutoConfig.from_pretrained(tmp_path / "sentiment"), notes=same)
    assert same == []


def test_labels_that_do_not_match_the_data_say_the_fix_through_train(cli, tmp_path):
    csv = tmp_path / "stars.csv"
    pd.DataFrame({"text": [f"review {i}" for i in range(40)], "label": [1 + i % 5 for i in range(40)]}).to_csv(csv, index=False)
    out = tmp_path / "run"
    result = cli("train", "quickstart", f"data.train={csv}", "-o", out)
    assert_clean_error(result, 2, "data.labels names ['negative', 'positive']", "1, 2, 3, 4, 5", "data.labels=null")
    assert not out.exists() and not (tmp_path / "run.incomplete").exists()


def test_recipes_list_is_sorted_by_name_and_says_what_a_recipe_needs(cli):
    result = cli("recipes", "list")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    names = [r[0] for r in rows]
    assert names == sorted(names) and names.index("bart-en-fr") < names.index("bart-en-fr-lora")
    runs = {r[0]: " ".join(r[3:6]) for r in rows}
    assert runs["quickstart"].startswith("offline") and runs["bert-sst2"].startswith("hub")
    assert runs["gpt2-tweets-grpo"].startswith("offline after gpt2-tweets+quickstart")
