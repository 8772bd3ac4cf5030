"""Reward tuning: tasks `reward-modeling`, `dpo`, `grpo` and `rloo` end to end through the CLI on tiny
models (1 layer, 32 wide) and small synthetic data whose right answer is known: the preferred text
holds the word "great", and the policy's reward is the share of the letter "a" in its completions.
Each training test checks what a user would: exit code, run folder, metrics moving the right way
against chance or the untrained model. Then the one-line errors of chaining and bad inputs, and
the TRL configs' CPU defaults."""
from __future__ import annotations

import json
import re
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from conftest import HUB_TOKEN, Result, assert_clean_error, save_tiny_bert, write_files

WORDS = "the a movie day food service weather team song book was is really quite".split()
MARKER = "great"
TINY_BERT = ("{model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
             "intermediate_size: 64, max_position_embeddings: 64}")
TINY_GPT2 = "{model_type: gpt2, n_layer: 1, n_embd: 32, n_head: 2, n_positions: 64}"

REWARD_FUNCTIONS = '''
def letter_a(completions, **_):
    """The share of a completion's characters that are the letter a (0 for an empty one)."""
    return [c.count("a") / len(c) if c else 0.0 for c in completions]


def chat_letter_a(completions, **_):
    """letter_a of conversational completions (TRL passes each as [{"role": "assistant", "content": ...}])."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [t.count("a") / len(t) if t else 0.0 for t in texts]


def broken(completions, **_):
    raise ValueError("no score for you")


def broken_in_training(completions, **_):
    if len(completions) > 2:  # `validate` calls every reward on two prompts: this one passes there
        raise RuntimeError("boom in training")
    return [0.0] * len(completions)


def too_few(completions, **_):
    return [1.0]
'''


def letter_a(text: str) -> float:
    return text.count("a") / len(text) if text else 0.0


def sentence(rng: random.Random, low: int, high: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(low, high))]


def marker_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Whole-text pairs (no prompt): chosen = random words with "great" somewhere, rejected = other
    random words. A model that has not learnt the marker ranks them at chance."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        good = sentence(rng, 3, 7)
        good.insert(rng.randrange(len(good) + 1), MARKER)
        rows.append({"chosen": " ".join(good), "rejected": " ".join(sentence(rng, 3, 7))})
    return rows


def continuation_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Prompt + two continuations of 3-5 words that differ in one word, never the first: " great" in
    the chosen one, another word in the rejected one, at the same place (2nd to last word). Their
    first words are the same, so a policy must read past the first word to tell them apart."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt, words = " ".join(sentence(rng, 2, 4)), sentence(rng, 2, 4)
        at = rng.randint(1, len(words))
        chosen, rejected = words[:at] + [MARKER] + words[at:], words[:at] + [rng.choice(WORDS)] + words[at:]
        rows.append({"prompt": prompt, "chosen": " " + " ".join(chosen), "rejected": " " + " ".join(rejected)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def metrics_of(run: Path) -> tuple[dict, dict]:
    """(before training, after training) metrics of a finished run."""
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics["before_training"], metrics["validation"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    """Data files, the reward functions' file and one recipe per task, all tiny."""
    root = tmp_path_factory.mktemp("reward_tuning")
    pairs = write_jsonl(root / "pairs.jsonl", marker_pairs(240, seed=0))
    dpo_pairs = write_jsonl(root / "dpo.jsonl", continuation_pairs(160, seed=2))
    rng = random.Random(1)
    prompts = write_jsonl(root / "prompts.jsonl", [{"prompt": " ".join(sentence(rng, 2, 4))} for _ in range(72)])
    # held-out prompts for the policy tests that measure learning: 64 of them, so that the thresholds are
    # >= 3 standard errors of the before-training mean reward (18 prompts made +0.02 about one)
    eval_prompts = write_jsonl(root / "eval_prompts.jsonl", [{"prompt": " ".join(sentence(rng, 2, 4))} for _ in range(64)])
    texts = write_jsonl(root / "texts.jsonl", [{"text": r["prompt"] + r[k]} for r in continuation_pairs(160, seed=3)
                                                for k in ("chosen", "rejected")])
    (root / "reward_fns.py").write_text(REWARD_FUNCTIONS)
    no_rejected = write_jsonl(root / "no_rejected.jsonl",
                              [{"chosen": r["chosen"], "reject": r["rejected"]} for r in marker_pairs(40, seed=5)])
    gpt2 = (f"  from_scratch: {TINY_GPT2}\n"
            "  tokenizer: {train: true, vocab_size: 300, min_frequency: 1}\n")
    recipes = {
        "reward": f"""\
task: reward-modeling
model:
  from_scratch: {TINY_BERT}
  tokenizer: {{train: true, type: wordpiece, vocab_size: 200}}
data: {{train: '{pairs}', validation_size: 0.25, max_length: 32}}
training: {{num_train_epochs: 4, learning_rate: 1.0e-3, per_device_train_batch_size: 16, eval_strategy: 'no', save_strategy: 'no'}}
""",
        "dpo": f"""\
task: dpo
model:
{gpt2}data: {{train: '{dpo_pairs}', validation_size: 0.25, max_length: 32}}
training: {{num_train_epochs: 3, learning_rate: 1.0e-2, per_device_train_batch_size: 16, beta: 0.1, eval_strategy: 'no', save_strategy: 'no'}}
""",
        "grpo": f"""\
task: grpo
model:
{gpt2}data: {{train: '{prompts}', validation_size: 0.25, max_prompt_length: 16, max_eval_samples: 18}}
reward:
  - function: '{root / "reward_fns.py"}:letter_a'
training: {{num_train_epochs: 1, learning_rate: 1.0e-2, per_device_train_batch_size: 8, num_generations: 4,
           max_completion_length: 8, beta: 0.0, save_strategy: 'no', logging_steps: 2}}
""",
        "lm": f"""\
task: causal-lm
model:
{gpt2}data: {{train: '{texts}', max_length: 32, max_eval_samples: 32}}
eval: {{before_training: false}}
training: {{num_train_epochs: 1, learning_rate: 1.0e-2, per_device_train_batch_size: 32, eval_strategy: 'no', save_strategy: 'no'}}
""",
    }
    out = SimpleNamespace(root=root, pairs=pairs, dpo_pairs=dpo_pairs, prompts=prompts, eval_prompts=eval_prompts,
                          no_rejected=no_rejected,
                          reward_fns=root / "reward_fns.py")
    for name, text in recipes.items():
        (root / f"{name}.yaml").write_text(text)
        setattr(out, name, str(root / f"{name}.yaml"))
    return out


def fn(files: SimpleNamespace, name: str) -> str:
    """A `reward=[...]` override naming one function of the reward file."""
    return f"reward=[{{function: '{files.reward_fns}:{name}'}}]"


FROM_RUN = ["model.from_scratch=null", "model.tokenizer=null"]  # with model.name_or_path=RUN


@pytest.fixture(scope="module")
def lm_run(files) -> Path:
    """A tiny causal-lm run (GPT-2 from scratch on the texts of the pairs): a policy to start from."""
    from hf_tuner.cli import app

    out = files.root / "lm-run"
    result = Result(CliRunner().invoke(app, ["train", files.lm, "-o", str(out)]))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def bert_base(files) -> Path:
    """A tiny BERT + wordpiece tokenizer saved as a "pretrained" model folder (for LoRA)."""
    from hf_tuner.modeling import train_tokenizer

    texts = [r[k] for r in marker_pairs(240, seed=0) for k in ("chosen", "rejected")]
    path = files.root / "bert-base"
    save_tiny_bert(path, train_tokenizer(texts, "wordpiece", 200, 1, "encoder"))
    return path


@pytest.fixture(scope="module")
def classifier(files) -> Path:
    """An untrained tiny BERT sentiment classifier (labels negative, positive; 64 positions) saved as a
    model folder, with a wordpiece tokenizer trained from scratch (which sets no model_max_length)."""
    from hf_tuner.modeling import train_tokenizer

    path = files.root / "classifier"
    save_tiny_bert(path, train_tokenizer([" ".join(WORDS + [MARKER])] * 4, "wordpiece", 100, 1, "encoder"),
                   "BertForSequenceClassification", id2label={0: "negative", 1: "positive"},
                   label2id={"negative": 0, "positive": 1})
    return path


@pytest.fixture(scope="module")
def gpt2_base(files) -> Path:
    """A tiny GPT-2 (untrained) + byte-level BPE tokenizer saved as a "pretrained" model folder (for LoRA)."""
    from transformers import AutoConfig, GPT2LMHeadModel

    from hf_tuner.modeling import train_tokenizer

    texts = [r[k] for r in continuation_pairs(160, seed=2) for k in ("prompt", "chosen", "rejected")]
    tokenizer = train_tokenizer(texts, "byte-level-bpe", 300, 1, "causal")
    config = AutoConfig.for_model("gpt2", vocab_size=len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=64,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    path = files.root / "gpt2-base"
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def rewards_of(result: Result) -> dict[str, float]:
    """`hf-tuner predict` lines of a reward model ("TEXT<tab>reward X") -> {text: reward}."""
    out = {}
    for line in result.stdout.strip().splitlines():
        text, _, score = line.partition("\treward ")
        out[text] = float(score)
    return out


# ------------------------------------------------------------------------------ reward-modeling


@pytest.mark.slow
def test_reward_model_learns_to_prefer_the_marker(cli, files, tmp_path):
    out = tmp_path / "rm"
    result = cli("train", files.reward, "-o", out)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "model.safetensors", "tokenizer.json", "config.yaml", "metrics.json", "summary.json",
                 "README.md"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert len(config["id2label"]) == 1  # one output: the reward
    before, after = metrics_of(out)
    assert before["pairs"] == after["pairs"] == 60  # 25% of 240 pairs held out
    # untrained, the model scores every text about alike: margin ~0, loss -log sigmoid(0) = ln 2
    assert before["loss"] == pytest.approx(math.log(2), abs=0.01)
    assert after["accuracy"] > before["accuracy"] and after["accuracy"] >= 0.9, (before, after)
    assert after["margin"] > 0.5 and after["loss"] < 0.5, after

    result = cli("predict", out, "the movie was great today", "the movie was quite today")
    assert result.exit_code == 0, result.output
    scores = rewards_of(result)
    assert scores["the movie was great today"] > scores["the movie was quite today"], scores

    fresh = write_jsonl(tmp_path / "fresh.jsonl", marker_pairs(40, seed=7))  # pairs it never saw
    result = cli("eval", out, "--data", fresh)
    assert result.exit_code == 0, result.output
    assert "accuracy=" in result.stdout
    report = json.loads((out / "eval" / "fresh.json").read_text())
    assert report["rows"] == report["metrics"]["pairs"] == 40
    assert report["metrics"]["accuracy"] >= 0.9, report["metrics"]
    # the same pairs the wrong way round: eval really reads which text is chosen
    swapped = write_jsonl(tmp_path / "swapped.jsonl", [{"chosen": r["rejected"], "rejected": r["chosen"]}
                                                       for r in marker_pairs(40, seed=7)])
    result = cli("eval", out, "--data", swapped)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "eval" / "swapped.json").read_text())["metrics"]["accuracy"] <= 0.1


@pytest.mark.slow
def test_reward_model_with_lora_trains_predicts_and_pushes(cli, files, bert_base, tmp_path, hub):
    out = tmp_path / "rm-lora"
    result = cli("train", files.reward, *FROM_RUN, f"model.name_or_path={bert_base}", "method.name=lora",
                 "training.learning_rate=1e-2", "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "model.safetensors").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trainable_params"] < summary["total_params"] / 5
    before, after = metrics_of(out)
    assert after["accuracy"] > before["accuracy"] and after["accuracy"] >= 0.9, (before, after)
    result = cli("predict", out, "the song was great", "the song was quite")
    assert result.exit_code == 0, result.output
    scores = rewards_of(result)
    assert scores["the song was great"] > scores["the song was quite"], scores
    # pushed merged (base + adapter, outputs checked equal before upload): the Hub copy scores as the run does
    result = cli("push", out, "--repo-id", "me/rm", "--merge-lora", "--token", HUB_TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    received = write_files(hub.files("me/rm"), tmp_path / "received")
    assert not (received / "adapter_config.json").exists()
    card = (received / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "hf-tuner train" in card
    fresh = write_jsonl(tmp_path / "fresh.jsonl", marker_pairs(40, seed=7))  # pairs it never trained on
    result = cli("eval", received, "--data", fresh)  # the task from its config.yaml
    assert result.exit_code == 0, result.output
    accuracy = float(result.stdout.split("accuracy=")[1].split()[0])
    assert accuracy >= 0.9  # the trained reward model arrived, not the untrained base (chance: 0.5)


# ------------------------------------------------------------------------------ grpo / rloo


def check_samples(run: Path, reward_name: str = "letter_a", prompts: int = 18) -> None:
    """The sample files hold what the metrics say: each completion's reward recomputed from its text."""
    before, after = metrics_of(run)
    for phase, metrics in (("before", before), ("after", after)):
        rows = read_jsonl(run / f"samples_{phase}.jsonl")
        assert len(rows) == prompts  # data.max_eval_samples held-out prompts
        for row in rows:
            assert row[f"reward/{reward_name}"] == pytest.approx(letter_a(row["completion"]), abs=1e-6)
        assert metrics["mean_reward"] == pytest.approx(sum(r["reward"] for r in rows) / len(rows), abs=1e-5)
        assert metrics[f"reward/{reward_name}"] == pytest.approx(metrics["mean_reward"], abs=1e-5)  # one reward, weight 1


def standard_error_before(run: Path) -> float:
    """The standard error of the before-training mean reward, from the run's own samples."""
    rewards = [r["reward"] for r in read_jsonl(run / "samples_before.jsonl")]
    mean = sum(rewards) / len(rewards)
    return math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1) / len(rewards))


# the 64 held-out prompts of files.eval_prompts, and the 54 training prompts the 25% split of 72 leaves
HELD_OUT = ["data.validation={eval_prompts}", "data.max_eval_samples=64", "data.max_train_samples=54"]


def counting_samples(monkeypatch) -> list[int]:
    """Count the completions TRL's trainer gets from `loops.sample` (hf-tuner's lean sampling)."""
    from hf_tuner.tasks.parts import loops

    counted: list[int] = []
    original = loops.sample

    def counting(model, input_ids, *args, **kwargs):
        counted.append(input_ids.shape[0])
        return original(model, input_ids, *args, **kwargs)

    monkeypatch.setattr(loops, "sample", counting)
    return counted


@pytest.mark.slow
def test_grpo_raises_a_function_reward(cli, files, tmp_path, monkeypatch):
    sampled = counting_samples(monkeypatch)
    out = tmp_path / "grpo"
    result = cli("train", files.grpo, *[o.format(eval_prompts=files.eval_prompts) for o in HELD_OUT],
                 "training.num_train_epochs=2", "-o", out)  # 1 epoch gained +0.04 on 64 prompts: too little to tell
    assert result.exit_code == 0, result.output
    for name in ("samples_before.jsonl", "samples_after.jsonl", "reward.png", "model.safetensors", "metrics.json"):
        assert (out / name).is_file(), name
    before, after = metrics_of(out)
    threshold = 0.05  # the untrained model's share of "a" is ~0.04 (sd ~0.05 per completion)
    assert threshold >= 3 * standard_error_before(out)  # 64 prompts: the rise is not noise
    assert after["mean_reward"] > before["mean_reward"] + threshold, (before, after)
    assert 0 < after["mean_length"] <= 8 and 0 <= after["distinct_2"] <= 1
    assert 0 <= after["rising_word_share"] <= 1 and "rising_word_share" not in before  # after vs before samples
    check_samples(out, prompts=64)
    history = json.loads((out / "log_history.json").read_text())
    assert any("reward" in h for h in history)  # what reward.png plots
    steps = json.loads((out / "summary.json").read_text())["train"]["global_steps"]
    assert len(sampled) == steps and sum(sampled) > 0  # every step's completions came from loops.sample


@pytest.mark.slow
def test_grpo_takes_conversational_prompts(cli, files, tmp_path):
    """Prompts as lists of messages go through the chat template (TRL renders them; hf-tuner measures and
    samples them the same way): a run trains, and its held-out samples answer each conversation."""
    rng = random.Random(7)
    chats = write_jsonl(tmp_path / "chats.jsonl", [{"prompt": [{"role": "user", "content": " ".join(sentence(rng, 2, 4))}]}
                                                   for _ in range(48)])
    out = tmp_path / "grpo-chat"
    result = cli("train", files.grpo, f"data.train={chats}", "model.tokenizer.chat_template=chatml",
                 "data.max_prompt_length=24", fn(files, "chat_letter_a"), "-o", out)
    assert result.exit_code == 0, result.output
    samples = [json.loads(l) for l in (out / "samples_after.jsonl").read_text().splitlines()]
    assert samples and all(isinstance(s["completion"], str) for s in samples), samples[:2]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": [{"role": "robot", "content": "hi"}]}] * 12)
    assert_clean_error(cli("validate", files.grpo, f"data.train={bad}", "model.tokenizer.chat_template=chatml"), 2,
                       "unknown role 'robot'")


@pytest.mark.slow
def test_rloo_from_a_causal_lm_run_raises_the_reward(cli, files, lm_run, tmp_path, monkeypatch):
    """RLOO starting from a trained run folder (chaining), with RLOO's default beta > 0: the
    reference model is that run, re-loaded, and the KL to it is logged."""
    sampled = counting_samples(monkeypatch)
    out = tmp_path / "rloo"
    result = cli("train", files.grpo, "task=rloo", "training.beta=null", *FROM_RUN, f"model.name_or_path={lm_run}",
                 "training.learning_rate=2e-2", *[o.format(eval_prompts=files.eval_prompts) for o in HELD_OUT],
                 # 8 completions per prompt, 2 epochs: 4 and 1 gained +0.01 on 64 prompts (KL to the LM run holds it)
                 "training.num_generations=8", "training.per_device_train_batch_size=16", "training.num_train_epochs=2",
                 "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "samples_after.jsonl").is_file() and (out / "reward.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "rloo" and summary["model"] == str(lm_run)
    before, after = metrics_of(out)
    threshold = 0.04  # the LM run's share of "a" is ~0.10 (sd ~0.07 per completion)
    assert threshold >= 3 * standard_error_before(out)  # 64 prompts: the rise is not noise
    assert after["mean_reward"] > before["mean_reward"] + threshold, (before, after)
    check_samples(out, prompts=64)
    history = json.loads((out / "log_history.json").read_text())
    assert any(h.get("kl", 0) > 0 for h in history)  # beta > 0: a reference model was there
    assert len(sampled) == summary["train"]["global_steps"]  # RLOO's completions came from loops.sample too


@pytest.mark.slow
def test_a_classifier_with_another_tokenizer_as_reward(cli, files, tiny_lora_run, tmp_path):
    """The session's tiny BERT sentiment run (wordpiece, [CLS]/[SEP]) rewards a GPT-2 policy (byte-level
    BPE): each completion is scored as P(positive) of prompt + completion, tokenised as the classifier
    was trained."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "grpo-cls"
    reward = f"reward=[{{model: '{tiny_lora_run}', label: positive, name: pos}}]"
    result = cli("train", files.grpo, reward, "data.max_train_samples=8", "-o", out)
    assert result.exit_code == 0, result.output
    before, after = metrics_of(out)
    for metrics in (before, after):
        assert 0.0 <= metrics["reward/pos"] <= 1.0 and metrics["mean_reward"] == pytest.approx(metrics["reward/pos"])

    rows = read_jsonl(out / "samples_after.jsonl")[:6]
    texts = [r["prompt"] + r["completion"] for r in rows]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_lora_run).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_lora_run)
    positive = model.config.label2id["positive"]

    def p_positive(special_tokens: bool) -> list[float]:
        out = []
        for text in texts:  # one by one: no padding
            enc = tokenizer(text, add_special_tokens=special_tokens, truncation=True, max_length=64, return_tensors="pt")
            with torch.no_grad():
                out.append(float(model(**enc).logits.softmax(-1)[0, positive]))
        return out

    expected, without_cls_sep = p_positive(True), p_positive(False)
    assert [r["reward/pos"] for r in rows] == pytest.approx(expected, abs=1e-4)
    # (the check tells the two apart: the text without [CLS]/[SEP], as TRL feeds a reward model, scores otherwise)
    assert max(abs(a - b) for a, b in zip(expected, without_cls_sep)) > 1e-3


    # and a classifier run is no policy
    result = cli("validate", files.grpo, *FROM_RUN, f"model.name_or_path={tiny_lora_run}")
    assert_clean_error(result, 2, "is a text-classification run")


def test_a_classifier_reward_needs_one_of_its_labels(cli, files, classifier):
    result = cli("validate", files.grpo, f"reward=[{{model: '{classifier}', label: positiv}}]")
    assert_clean_error(result, 2, "reward[0].label 'positiv'", "did you mean 'positive'", "negative, positive")
    result = cli("validate", files.grpo, f"reward=[{{model: '{classifier}'}}]")
    assert_clean_error(result, 2, "2 labels", "negative, positive", "reward[0].label")
    result = cli("validate", files.grpo, f"reward=[{{model: '{classifier}', label: positive}}]")
    assert result.exit_code == 0, result.output


def test_a_classifier_reward_cuts_texts_to_its_positions(classifier):
    """A text longer than the classifier's 64 positions is scored on its first 64 tokens, not a crash
    (the tokenizer, trained from scratch, knows no limit of its own)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_tuner.tasks.parts.rewards import ModelReward, RewardSpec

    reward = ModelReward(RewardSpec(model=str(classifier), label="positive", precision="fp32"), 0)
    completions = [" what a great day" * 40, " ok"]
    scores = reward(prompts=["today", "today"], completions=completions)
    model = AutoModelForSequenceClassification.from_pretrained(classifier).eval()
    tokenizer = AutoTokenizer.from_pretrained(classifier)
    for completion, score in zip(completions, scores):
        enc = tokenizer("today" + completion, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            expected = float(model(**enc).logits.softmax(-1)[0, 1])
        assert score == pytest.approx(expected, abs=1e-5)


def test_a_classifier_reward_in_bf16_stays_within_bf16_rounding_of_fp32(classifier):
    """`precision: bf16` scores under torch.autocast: each probability within 0.02 of the fp32 one
    (bf16 keeps 8 significant bits, about 0.4% per operation; set before the run), and not all
    equal to it (the autocast really ran)."""
    from hf_tuner.tasks.parts.rewards import ModelReward, RewardSpec

    rng = random.Random(3)
    prompts = [" ".join(sentence(rng, 2, 6)) for _ in range(24)]
    completions = [" " + " ".join(sentence(rng, 1, 12)) + (" " + MARKER if i % 2 else "") for i in range(24)]
    exact = ModelReward(RewardSpec(model=str(classifier), label="positive", precision="fp32"), 0)(prompts, completions)
    fast = ModelReward(RewardSpec(model=str(classifier), label="positive", precision="bf16"), 0)(prompts, completions)
    gaps = [abs(a - b) for a, b in zip(exact, fast)]
    assert max(gaps) < 0.02, gaps
    assert max(gaps) > 0, "bf16 gave the fp32 scores exactly: the autocast did not run"


def test_held_out_scores_come_from_the_whole_model_in_fp32(classifier):
    """`total_reward(..., exact=True)` (the held-out samples before and after training) scores with
    the model as saved, whatever the reward's training-time precision: a bf16 reward's exact scores
    are the fp32 reward's, its training scores are not."""
    from hf_tuner.tasks.parts.rewards import ModelReward, RewardSpec, total_reward

    rng = random.Random(4)
    prompts = [" ".join(sentence(rng, 2, 6)) for _ in range(12)]
    completions = [" " + " ".join(sentence(rng, 1, 12)) for _ in range(12)]
    fp32 = ModelReward(RewardSpec(model=str(classifier), label="positive", precision="fp32"), 0)(prompts, completions)
    bf16 = ModelReward(RewardSpec(model=str(classifier), label="positive", precision="bf16", name="r"), 0)
    assert bf16(prompts, completions) != pytest.approx(fp32, abs=1e-6)
    totals, per = total_reward([bf16], [2.0], prompts, completions, exact=True)
    assert per["r"] == pytest.approx(fp32, abs=1e-6) and totals == pytest.approx([2 * v for v in fp32], abs=1e-6)


def tiny_sequence_classifier(model_type: str, attention: str = "sdpa"):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(0)
    sizes = {"gpt2": dict(n_layer=2, n_embd=32, n_head=2, bos_token_id=2, eos_token_id=2),
             "distilbert": dict(n_layers=2, dim=32, n_heads=2, hidden_dim=64)}
    config = AutoConfig.for_model(model_type, vocab_size=100, num_labels=2, pad_token_id=1, attn_implementation=attention,
                                  initializer_range=0.2,  # weights large enough for every token to move the logits
                                  **sizes.get(model_type, dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                                                intermediate_size=64)))
    return AutoModelForSequenceClassification.from_config(config).eval()


@pytest.mark.parametrize("model_type,attention", [("bert", "sdpa"), ("bert", "eager"), ("roberta", "sdpa"), ("electra", "eager")])
def test_the_first_token_last_layer_gives_the_whole_models_logits(model_type, attention, monkeypatch):
    """BERT-style classifiers read the first token only: with the last layer computed for it alone
    (and keys / values from every token, padding masked) the logits are the whole model's, within
    float rounding (1e-5, set before the run); the same layer ignoring the padding mask moves them
    by more than 1e-2 (the check can tell)."""
    import torch

    from hf_tuner.tasks.parts import families
    from hf_tuner.tasks.parts.families import first_token_last_layer, trims_to_first_token

    model = tiny_sequence_classifier(model_type, attention)
    ids = torch.randint(5, 100, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    shapes = []
    model.base_model.encoder.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.last_hidden_state.shape)))
    assert trims_to_first_token(model)
    with torch.no_grad():
        whole = model(input_ids=ids, attention_mask=mask).logits
        with first_token_last_layer(model):
            trimmed = model(input_ids=ids, attention_mask=mask).logits
        again = model(input_ids=ids, attention_mask=mask).logits
    assert shapes == [(4, 9, 32), (4, 1, 32), (4, 9, 32)]  # trimmed inside the block only
    assert torch.allclose(trimmed, whole, atol=1e-5) and torch.equal(again, whole)

    layer = families.first_token_layer()

    class Unmasked(layer):
        def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
            return super().forward(hidden_states, None)

    monkeypatch.setattr(families, "first_token_layer", lambda: Unmasked)
    with torch.no_grad(), first_token_last_layer(model):
        assert (model(input_ids=ids, attention_mask=mask).logits - whole).abs().max() > 1e-2


@pytest.mark.parametrize("model_type", ["gpt2", "distilbert"])
def test_models_whose_head_reads_other_tokens_are_not_trimmed(model_type):
    from hf_tuner.tasks.parts.families import trims_to_first_token

    assert not trims_to_first_token(tiny_sequence_classifier(model_type))  # GPT-2 reads the last token


def test_a_classifier_reward_trims_its_last_layer_after_checking_it(classifier, monkeypatch):
    """A BERT classifier reward checks the trimmed last layer against the whole model on its first
    call, then scores training steps with it (the same scores); a trimmed layer that disagrees is
    never used."""
    from hf_tuner.tasks.parts import families
    from hf_tuner.tasks.parts.rewards import ModelReward, RewardSpec

    rng = random.Random(5)
    prompts = [" ".join(sentence(rng, 2, 6)) for _ in range(10)]
    completions = [" " + " ".join(sentence(rng, 1, 12)) + (" " + MARKER if i % 3 else "") for i in range(10)]
    exact = ModelReward(RewardSpec(model=str(classifier), label="positive", precision="fp32"), 0)
    expected = exact.score(prompts, completions, exact=True)
    reward = ModelReward(RewardSpec(model=str(classifier), label="positive", precision="fp32"), 0)
    lengths = []
    reward.model.base_model.encoder.register_forward_hook(lambda m, a, out: lengths.append(out.last_hidden_state.shape[1]))
    assert reward(prompts, completions) == pytest.approx(expected, abs=1e-6) and reward.trim is True
    assert reward(prompts, completions) == pytest.approx(expected, abs=1e-5)
    assert lengths[-1] == 1 and lengths[0] > 1  # the second call ran the trimmed layer

    layer = families.first_token_layer()

    class Off(layer):  # a trimmed layer that skips the layer's work
        def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
            return hidden_states[:, :1]

    monkeypatch.setattr(families, "first_token_layer", lambda: Off)
    wrong = ModelReward(RewardSpec(model=str(classifier), label="positive", precision="fp32"), 0)
    assert wrong(prompts, completions) == pytest.approx(expected, abs=1e-6) and wrong.trim is False
    assert wrong(prompts, completions) == pytest.approx(expected, abs=1e-6)


def test_auto_precision_takes_bf16_only_on_a_gpu_that_runs_it(monkeypatch):
    import torch

    from hf_tuner.tasks.parts import rewards

    cpu = torch.device("cpu")
    assert rewards.reward_autocast("fp32", cpu) is None
    assert rewards.reward_autocast("bf16", cpu) is torch.bfloat16
    assert rewards.reward_autocast("auto", cpu) is None  # measured slower than fp32 on some bf16 CPUs
    gpu = torch.device("cuda", 0)
    for capability, expected in (((7, 5), None), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert rewards.reward_autocast("auto", gpu) is expected, capability


def test_a_wrong_reward_precision_is_one_line(cli, files, classifier):
    result = cli("validate", files.grpo, f"reward=[{{model: '{classifier}', label: positive, precision: fp16}}]")
    assert_clean_error(result, 2, "precision", "fp16", "'auto', 'bf16' or 'fp32'")
    result = cli("validate", files.grpo, "reward=[{function: shared_tags, precision: bf16}]")
    assert_clean_error(result, 2, "`precision` goes with `model`")


# ------------------------------------------------------------------------------ sampling


def tiny_sampler_model(attention: str = "sdpa"):
    """A random 1-layer GPT-2 over 20 tokens (token 3 is eos: sampled often enough to end rows early),
    and 6 left-padded prompts of 2 to 7 tokens."""
    import torch
    from transformers import AutoConfig, GPT2LMHeadModel

    torch.manual_seed(0)
    config = AutoConfig.for_model("gpt2", vocab_size=20, n_layer=1, n_embd=32, n_head=2, n_positions=64,
                                  eos_token_id=3, bos_token_id=3, pad_token_id=0, attn_implementation=attention)
    model = GPT2LMHeadModel(config).eval()
    assert model.config._attn_implementation == attention
    rows = [[5 + (i * j) % 14 for j in range(2 + i)] for i in range(6)]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return model, ids, mask


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # sample hands SDPA its own boolean mask
def test_lean_sampling_gives_generates_tokens_with_the_same_random_draw(attention):
    """loops.sample with torch.multinomial as its draw gives model.generate's tokens exactly, eos
    padding included; settings it does not handle (top-k) go to generate itself."""
    import torch
    from transformers import GenerationConfig

    from hf_tuner.tasks.parts.loops import plain_sampling, sample
    from hf_tuner.tasks.policy import sample_or_generate

    model, ids, mask = tiny_sampler_model(attention)
    config = GenerationConfig(do_sample=True, max_new_tokens=12, temperature=0.7, top_k=0, top_p=1.0, min_p=None,
                              repetition_penalty=1.0, eos_token_id=[3], pad_token_id=0)
    assert plain_sampling(config)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        torch.manual_seed(7)
        got = sample(model, ids, mask, 12, 0.7, [3], 0, draw=lambda p: torch.multinomial(p, 1)[:, 0])
    assert torch.equal(got, expected)
    new = got[:, ids.shape[1]:]
    assert (new == 3).any(dim=1).sum() >= 1  # a row ended early, and was padded after its eos like generate's
    with torch.no_grad():
        lean = sample_or_generate(model, generation_config=config, input_ids=ids, attention_mask=mask)
    assert lean.shape[0] == ids.shape[0] and torch.equal(lean[:, :ids.shape[1]], ids) and lean.shape[1] <= ids.shape[1] + 12
    top_k = GenerationConfig(**{**config.to_dict(), "top_k": 5})
    assert not plain_sampling(top_k)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = model.generate(input_ids=ids, attention_mask=mask, generation_config=top_k)
        torch.manual_seed(7)
        assert torch.equal(sample_or_generate(model, generation_config=top_k, input_ids=ids, attention_mask=mask), expected)


def test_one_token_decoder_gives_the_models_own_tokens_with_dropout():
    """A GPT-2 in train mode (dropout on, as TRL samples): loops.sample through the OneTokenDecoder
    gives the tokens of the model's own forward with the same seed, and after its first checked call
    the model's forward runs only for the prompt; a decoder that drops its dropout is refused on
    its first step and the model's own tokens come back."""
    import torch
    from transformers import AutoConfig, GPT2LMHeadModel

    from hf_tuner.tasks.parts import decoding, loops

    torch.manual_seed(0)
    config = AutoConfig.for_model("gpt2", vocab_size=50, n_layer=2, n_embd=32, n_head=4, n_positions=64,
                                  eos_token_id=3, bos_token_id=3, pad_token_id=0, attn_implementation="sdpa",
                                  initializer_range=0.2, embd_pdrop=0.2, attn_pdrop=0.2, resid_pdrop=0.2)
    rows = [[5 + (i * j) % 40 for j in range(2 + i)] for i in range(6)]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])

    def run(model, seed=11):
        calls = []
        handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
        torch.manual_seed(seed)
        try:
            return loops.sample(model, ids, mask, 16, 1.0, [3], 0), len(calls)
        finally:
            handle.remove()

    model = GPT2LMHeadModel(config).train()
    assert decoding.decodes_one_token(model)
    checked, calls = run(model)
    assert loops.DECODES[model] is True and calls == 2  # the prompt, and the first step run both ways
    lean, calls = run(model)
    assert calls == 1 and torch.equal(lean, checked)  # the prompt only: every step through the decoder
    loops.DECODES[model] = False
    own, calls = run(model)
    assert calls > 2 and torch.equal(own, lean)
    assert not torch.equal(run(model, seed=12)[0], own)  # the seed matters: dropout and draws are random

    broken = GPT2LMHeadModel(config).train()
    step = decoding.OneTokenDecoder.step

    def without_dropout(self, token, position):
        self.model.eval()
        try:
            return step(self, token, position)
        finally:
            self.model.train()

    decoding.OneTokenDecoder.step = without_dropout
    try:
        refused, calls = run(broken)
    finally:
        decoding.OneTokenDecoder.step = step
    assert loops.DECODES[broken] is False and calls > 2
    loops.DECODES[broken] = False
    assert torch.equal(refused, run(broken)[0])  # the model's own tokens, the same as with no decoder at all
    eager = GPT2LMHeadModel(AutoConfig.for_model(**{**config.to_dict(), "attn_implementation": "eager"}))
    assert not decoding.decodes_one_token(eager) and not decoding.decodes_one_token(model.to(torch.bfloat16))


def test_inverse_cdf_draws_follow_the_probabilities():
    """20,000 draws from one distribution: a chi-square against the expected counts below 18.47
    (p = 0.001, 4 degrees of freedom; set before the run), and a token of probability 0 never drawn."""
    import torch

    from hf_tuner.tasks.parts.loops import inverse_cdf

    p = torch.tensor([0.0, 0.5, 0.2, 0.15, 0.1, 0.05, 0.0])
    torch.manual_seed(1)
    drawn = inverse_cdf(p.repeat(20_000, 1))
    counts = torch.bincount(drawn, minlength=len(p)).double()
    assert counts[0] == 0 and counts[-1] == 0
    expected = 20_000 * p[1:-1].double()
    chi2 = float(((counts[1:-1] - expected) ** 2 / expected).sum())
    assert chi2 < 18.47, (counts.tolist(), chi2)
    # a row whose sum is short of 1 by rounding still draws only its own tokens
    assert set(inverse_cdf(torch.tensor([[0.0, 0.3, 0.69999]]).repeat(1000, 1)).tolist()) <= {1, 2}


# ------------------------------------------------------------------------------ dpo


@pytest.mark.slow
def test_dpo_from_scratch_learns_the_preferred_continuation(cli, files, tmp_path):
    out = tmp_path / "dpo"
    result = cli("train", files.dpo, "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    before, after = metrics_of(out)
    # before training the policy is its own reference: every implicit reward is 0, no pair is won
    assert before["reward_accuracy"] == 0 and before["reward_margin"] == 0
    assert before["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert after["reward_accuracy"] >= 0.9 and after["reward_margin"] > 0 and after["loss"] < 0.5, after
    result = cli("predict", out, "the movie was", "--max-new-tokens", "3")  # a DPO policy generates like any LM
    assert result.exit_code == 0 and result.stdout.startswith("the movie was\t->"), result.output
    # a run from scratch saved no starting model, so `eval` has no reference to measure it against
    result = cli("eval", out, "--data", files.dpo_pairs)
    assert_clean_error(result, 2, "from scratch", "no reference model")


@pytest.mark.slow
def test_dpo_with_lora_on_a_saved_model(cli, files, gpt2_base, tmp_path, hub):
    """LoRA: the reference is the same model with its adapter switched off."""
    out = tmp_path / "dpo-lora"
    result = cli("train", files.dpo, *FROM_RUN, f"model.name_or_path={gpt2_base}", "method.name=lora",
                 "training.learning_rate=5e-2", "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "adapter" / "adapter_config.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lora_target_modules"] == ["c_attn"] and summary["trainable_params"] < summary["total_params"] / 5
    before, after = metrics_of(out)
    assert before["reward_accuracy"] == 0 and before["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert after["reward_accuracy"] >= 0.9 and after["reward_margin"] > 0 and after["loss"] < math.log(2) - 0.03, after
    # the adapter alone goes to the Hub with a text-generation card naming its base
    result = cli("push", out, "--repo-id", "me/dpo", "--adapter-only", "--token", HUB_TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    files_pushed = hub.files("me/dpo")
    assert "adapter_config.json" in files_pushed and "model.safetensors" not in files_pushed
    assert "pipeline_tag: text-generation" in files_pushed["README.md"].decode()


# ------------------------------------------------------------------------------ orpo


@pytest.mark.slow
def test_orpo_from_scratch_learns_the_preferred_continuation(cli, files, tmp_path):
    """ORPO on DPO's pairs: no reference, so the untrained model already wins some pairs by chance; the
    held-out reward accuracy must rise by more than 3 standard errors of chance on 40 pairs (0.24)."""
    out = tmp_path / "orpo"
    result = cli("train", files.dpo, "task=orpo", "training.learning_rate=1e-2", "-o", out)
    assert result.exit_code == 0, result.output
    before, after = metrics_of(out)
    rows = json.loads((out / "summary.json").read_text())["rows"]["validation"]
    assert rows == 40
    assert after["reward_accuracy"] >= before["reward_accuracy"] + 3 * math.sqrt(0.25 / rows), (before, after)
    assert after["nll_loss"] < before["nll_loss"] and after["log_odds_ratio"] > before["log_odds_ratio"], (before, after)
    result = cli("predict", out, "the movie was", "--max-new-tokens", "3")
    assert result.exit_code == 0 and result.stdout.startswith("the movie was\t->"), result.output
    result = cli("eval", out, "--data", files.dpo_pairs)
    assert result.exit_code == 0, result.output  # ORPO needs no reference model to be evaluated


# ------------------------------------------------------------------------------ kto


@pytest.mark.slow
def test_kto_from_pairs_learns_the_preferred_continuation(cli, files, tmp_path):
    """KTO on DPO's pairs, unpaired: before training the policy is its own reference (every reward 0,
    KTO's loss 1 - sigmoid(0) = 0.5); after, desirable completions gain reward over undesirable ones."""
    out = tmp_path / "kto"
    result = cli("train", files.dpo, "task=kto", "training.learning_rate=1e-2", "-o", out)
    assert result.exit_code == 0, result.output
    before, after = metrics_of(out)
    assert before["reward_margin"] == 0 and before["loss"] == pytest.approx(0.5, abs=1e-4), before
    assert after["reward_margin"] > 0 and after["reward_chosen"] > after["reward_rejected"] and after["loss"] < 0.45, after
    result = cli("predict", out, "the movie was", "--max-new-tokens", "3")
    assert result.exit_code == 0 and result.stdout.startswith("the movie was\t->"), result.output


def kto_rows(n: int, label=lambda i: i % 2 == 0) -> list[dict]:
    rows = continuation_pairs(n, seed=4)
    return [{"prompt": r["prompt"], "completion": r["chosen" if label(i) is True else "rejected"], "label": label(i)}
            for i, r in enumerate(rows)]


def test_kto_takes_unpaired_labelled_rows(cli, files, tmp_path):
    data = write_jsonl(tmp_path / "kto.jsonl", kto_rows(40))
    result = cli("validate", files.dpo, "task=kto", f"data.train={data}")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("label, needle", [(lambda i: "yes" if i == 3 else i % 2 == 0, "not true or false"),
                                           (lambda i: True, "only desirable")])
def test_a_kto_label_that_is_not_a_bool_or_one_kind_only_is_a_clean_error(cli, files, tmp_path, label, needle):
    data = write_jsonl(tmp_path / "kto.jsonl", kto_rows(40, label))
    assert_clean_error(cli("validate", files.dpo, "task=kto", f"data.train={data}"), 2, needle)


# ------------------------------------------------------------------------------ pairs that truncation makes identical


LONG_PROMPT = " ".join(["the story of the film was long and the music was quite good"] * 6)  # > 32 tokens


@pytest.mark.parametrize("recipe, task", [("dpo", "dpo"), ("reward", "reward-modeling"), ("dpo", "orpo"), ("dpo", "kto")])
def test_pairs_that_differ_only_past_max_length_are_counted_and_dropped(cli, files, tmp_path, recipe, task):
    rows = continuation_pairs(40, seed=6) + [{"prompt": LONG_PROMPT, "chosen": " good", "rejected": " bad"}] * 8
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    result = cli("validate", getattr(files, recipe), f"task={task}", f"data.train={data}", "--json")
    assert result.exit_code == 0, result.output
    notes = [n for n in json.loads(result.stdout).get("notes", []) if "identical within data.max_length=32" in n]
    assert sum(int(re.match(r"\w+: (\d+) of", n).group(1)) for n in notes) == 8, notes  # train + validation
    result = cli("plan", getattr(files, recipe), f"task={task}", f"data.train={data}")
    assert result.exit_code == 0 and "identical within data.max_length=32" in result.stdout, result.output
    # the short pairs alone: none identical
    short = write_jsonl(tmp_path / "short.jsonl", rows[:40])
    result = cli("validate", getattr(files, recipe), f"task={task}", f"data.train={short}", "--json")
    assert result.exit_code == 0 and not any("identical" in n for n in json.loads(result.stdout).get("notes", [])), result.output


def test_training_drops_the_pairs_truncation_makes_identical(files, tmp_path):
    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.recipes import load_config
    from hf_tuner.tasks import get_task

    rows = continuation_pairs(40, seed=6) + [{"prompt": LONG_PROMPT, "chosen": " good", "rejected": " bad"}] * 8
    cfg = load_config(files.dpo, [f"data.train={write_jsonl(tmp_path / 'long.jsonl', rows)}"])
    job = get_task("dpo").bind(cfg)
    splits = job.data.load(job)
    tokenizer = train_tokenizer([r["prompt"] + r["chosen"] + r["rejected"] for r in rows], "byte-level-bpe", 300, 1, "causal")
    out = job.data.preprocess(job, splits, tokenizer)
    assert len(splits.train) + len(splits.validation) == 48
    assert len(out.train) + len(out.validation) == 40 and LONG_PROMPT not in list(out.train["prompt"]) + list(out.validation["prompt"])


def test_no_pair_left_after_truncation_is_a_clean_error(cli, files, tmp_path):
    rows = [{"prompt": LONG_PROMPT + f" {i}", "chosen": " good", "rejected": " bad"} for i in range(20)]
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    assert_clean_error(cli("validate", files.dpo, f"data.train={data}"), 2, "every train pair is identical",
                       "raise data.max_length")


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("recipe", ["gpt2-tweets-dpo", "gpt2-tweets-orpo", "gpt2-tweets-kto", "gpt2-tweets-grpo",
                                    "gpt2-tweets-rloo", "gpt2-tweets-chat"])
def test_a_missing_run_folder_names_the_recipe_that_makes_it(cli, tmp_path, monkeypatch, recipe):
    monkeypatch.chdir(tmp_path)  # no runs/ here
    assert_clean_error(cli("validate", recipe), 2, "model path does not exist: runs/gpt2-tweets",
                       "hf-tuner train gpt2-tweets")


def test_recipes_that_chain_runs_are_valid_before_the_runs_exist(tmp_path, monkeypatch):
    from hf_tuner.recipes import load_config

    monkeypatch.chdir(tmp_path)
    for name in ("gpt2-tweets-dpo", "gpt2-tweets-orpo", "gpt2-tweets-kto", "gpt2-tweets-grpo", "gpt2-tweets-rloo", "gpt2-tweets-lora",
                 "gpt2-tweets-chat", "bart-en-fr-lora"):
        assert Path(load_config(name).model.name_or_path).parts[0] == "runs"


def test_a_missing_reward_run_names_its_recipe(cli, files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("validate", files.grpo, "reward=[{model: runs/tweets-reward}]")
    assert_clean_error(result, 2, "reward[0].model: runs/tweets-reward does not exist", "hf-tuner train tweets-reward")


@pytest.mark.slow
def test_a_causal_lm_run_is_no_reward_model(cli, files, lm_run):
    result = cli("validate", files.grpo, f"reward=[{{model: '{lm_run}'}}]")
    assert_clean_error(result, 2, "reward[0].model", "is a causal-lm run")


@pytest.mark.parametrize("recipe, overrides, needles", [
    ("reward", [], ["column 'rejected' not found", "columns are: chosen, reject", "data.rejected_column"]),
    ("dpo", ["data.chosen_column=good"], ["column 'good' not found", "columns are: chosen, reject", "data.chosen_column"]),
    # a prompt column named in the recipe must be there (only the default name, "prompt", is optional)
    ("dpo", ["data.prompt_column=context"], ["column 'context' not found", "data.prompt_column"]),
])
def test_missing_preference_columns_are_named(cli, files, recipe, overrides, needles):
    result = cli("validate", getattr(files, recipe), f"data.train={files.no_rejected}", *overrides)
    assert_clean_error(result, 2, *needles)


def test_grpo_recipe_mistakes_fail_in_validate(cli, files):
    result = cli("validate", files.grpo, "training.num_generation=4")
    assert_clean_error(result, 2, "num_generation", "did you mean 'num_generations'")
    result = cli("validate", files.grpo, "training.num_generations=3")  # 8 completions per step
    assert_clean_error(result, 2, "not divisible by training.num_generations=3")
    result = cli("validate", files.grpo, "data.max_prompt_length=60")  # + 8 completion tokens > 64 positions
    assert_clean_error(result, 2, "data.max_prompt_length (60)", "more than the model's 64 positions")
    result = cli("validate", files.grpo, "training.beta=0.1")  # from scratch: no reference model
    assert_clean_error(result, 2, "training.beta=0.1 needs a reference model")


def test_a_reward_function_returning_the_wrong_number_of_values(cli, files):
    result = cli("validate", files.grpo, fn(files, "too_few"))
    assert_clean_error(result, 1, "reward_fns.py:too_few returned 1 values for 2 completions")


def test_a_reward_function_that_raises_stops_train_before_training(cli, files, tmp_path):
    out = tmp_path / "run"
    result = cli("train", files.grpo, fn(files, "broken"), "-o", out)
    assert_clean_error(result, 1, "reward function", "reward_fns.py:broken raised ValueError: no score for you")
    assert not out.exists() and not Path(f"{out}.incomplete").exists()  # nothing trained, nothing kept


@pytest.mark.slow
def test_a_reward_function_that_raises_during_training(cli, files, tmp_path):
    out = tmp_path / "run"
    result = cli("train", files.grpo, fn(files, "broken_in_training"), "eval.before_training=false",
                 "data.max_train_samples=8", "-o", out)
    assert_clean_error(result, 1, "reward_fns.py:broken_in_training raised RuntimeError: boom in training")
    assert not out.exists()
    summary = json.loads((Path(f"{out}.incomplete") / "summary.json").read_text())
    assert summary["status"] == "failed" and "broken_in_training" in summary["error"]


# ------------------------------------------------------------------------------ TRL configs on a CPU

DEFAULT_RATES = {  # README: reward models 5e-5 (LoRA 5e-4), DPO 5e-6 (5e-5), GRPO/RLOO 1e-5 (1e-4)
    "reward-modeling": {"full": 5e-5, "lora": 5e-4},
    "dpo": {"full": 5e-6, "lora": 5e-5},
    "grpo": {"full": 1e-5, "lora": 1e-4},
    "rloo": {"full": 1e-5, "lora": 1e-4},
}
CONFIG_CLASSES = {"reward-modeling": "RewardConfig", "dpo": "DPOConfig", "grpo": "GRPOConfig", "rloo": "RLOOConfig"}


@pytest.mark.parametrize("task", list(DEFAULT_RATES))
def test_trl_configs_get_cpu_settings_and_task_learning_rates(files, tmp_path, monkeypatch, task):
    """TRL's configs default to bf16 (an error on a CPU) and GRPO/RLOO to gradient checkpointing."""
    import torch

    from hf_tuner.recipes import load_config
    from hf_tuner.run import training_arguments
    from hf_tuner.tasks import get_task

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    recipe = {"reward-modeling": files.reward, "dpo": files.dpo, "grpo": files.grpo, "rloo": files.grpo}[task]
    for method in ("full", "lora"):
        for rate in (None, 3e-3):
            overrides = [f"task={task}", f"method.name={method}", f"training.learning_rate={rate or 'null'}"]
            cfg = load_config(recipe, overrides)
            args = training_arguments(cfg, get_task(task).bind(cfg), tmp_path)
            assert type(args).__name__ == CONFIG_CLASSES[task]
            assert (args.bf16, args.fp16, args.gradient_checkpointing) == (False, False, False), (task, method)
            assert args.learning_rate == pytest.approx(rate or DEFAULT_RATES[task][method]), (task, method, rate)


# ------------------------------------------------------------------------------ plan


def test_plan_counts_pairs_generations_and_the_reference(cli, files):
    plans = {}
    for name in ("reward", "dpo", "grpo"):
        result = cli("plan", getattr(files, name), "--json")
        assert result.exit_code == 0, result.output
        plans[name] = json.loads(result.stdout)
    assert [l["name"] for l in plans["dpo"]["lengths"]] == ["chosen", "rejected"]
    assert "frozen copy" in plans["dpo"]["memory_per_device"]  # full DPO keeps a reference model
    assert "frozen copy" not in plans["grpo"]["memory_per_device"]  # beta 0: no reference
    # GRPO: 72 prompts, 25% held out -> 54; 4 completions each, 8 completions per step -> 27 steps
    assert plans["grpo"]["train_rows"] == 54 and plans["grpo"]["steps_per_epoch"] == 27
    assert plans["grpo"]["sequence_for_memory"] <= 16 + 8  # prompt limit + max_completion_length
    # reward model: 240 pairs, 25% held out -> 180, 16 per step -> ceil(180 / 16) = 12
    assert plans["reward"]["steps_per_epoch"] == 12
    # pairs are length-grouped by default; grouping reorders them and changes no count
    for name in ("reward", "dpo"):
        result = cli("plan", getattr(files, name), "training.train_sampling_strategy=random", "--json")
        assert result.exit_code == 0, result.output
        random_order = json.loads(result.stdout)
        assert random_order["steps_per_epoch"] == plans[name]["steps_per_epoch"] > 0
        assert random_order["train_rows"] == plans[name]["train_rows"]


# ------------------------------------------------------------------------------ length-grouped pairs

PAIR_SAMPLER_WORKER = """
import json, sys
import torch
from datasets import Dataset
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
from trl import RewardConfig, RewardTrainer
from hf_tuner.tasks.parts.preference import pair_length_grouped

tokenizer_dir, out, strategy, lengths = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
# pair i: chosen = token 5+i repeated, rejected = token 100+i repeated; a batch's rows name their pairs
rows = {"chosen_ids": [[5 + i] * c for i, (c, _) in enumerate(lengths)],
        "rejected_ids": [[100 + i] * r for i, (_, r) in enumerate(lengths)]}
torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=32, num_labels=1,
                                                 pad_token_id=tokenizer.pad_token_id))
args = RewardConfig(output_dir=out + ".trainer", per_device_train_batch_size=4, train_sampling_strategy=strategy,
                    report_to="none", bf16=False, max_length=None, use_cpu=True, seed=3)
trainer = pair_length_grouped(RewardTrainer)(model=model, args=args, train_dataset=Dataset.from_dict(rows),
                                             processing_class=tokenizer)
batches = []
for batch in trainer.get_train_dataloader():
    ids, half = batch["input_ids"], batch["input_ids"].shape[0] // 2
    batches.append({"chosen": [int(r[0]) - 5 for r in ids[:half]], "rejected": [int(r[0]) - 100 for r in ids[half:]],
                    "width": int(ids.shape[1])})
with open(f"{out}.{trainer.args.process_index}.json", "w") as f:
    json.dump({"batches": batches, "processes": trainer.args.world_size,
               "sampler": type(trainer._get_train_sampler()).__name__}, f)
"""


def sampled_pairs(tmp_path: Path, tokenizer_dir: Path, strategy: str, processes: int,
                  lengths: list[list[int]]) -> list[dict]:
    """The batches each process draws in one epoch of TRL's RewardTrainer with hf-tuner's pair sampler
    (launched as `hf-tuner train -n N` launches), one JSON per process."""
    import os
    import subprocess
    import sys

    from hf_tuner.launch import resolve_launch

    worker = tmp_path / "worker.py"
    worker.write_text(PAIR_SAMPLER_WORKER)
    out = tmp_path / f"{strategy}-{processes}"
    argv = [str(worker), str(tokenizer_dir), str(out), strategy, json.dumps(lengths)]
    if processes == 1:
        cmd = [sys.executable, *argv]
    else:
        launcher = resolve_launch(None, num_processes=processes).command([])
        cmd = [*launcher[:launcher.index("-m", 3)], *argv]  # `accelerate launch ...` up to `-m hf_tuner`
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in range(processes)]


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_grouped_pairs_come_once_per_epoch_chosen_with_rejected(bert_base, tmp_path, processes):
    rng = random.Random(0)
    lengths = [[rng.randint(2, 40), rng.randint(2, 40)] for _ in range(192)]  # 192 pairs: 24 steps of 2 x 4
    longer = [max(c, r) for c, r in lengths]
    grouped = sampled_pairs(tmp_path, bert_base, "group_by_length", processes, lengths)
    assert {g["sampler"] for g in grouped} == {"LengthGroupedSampler"} and grouped[0]["processes"] == processes
    seen = []
    for g in grouped:
        assert len(g["batches"]) == 192 // (4 * processes)
        for batch in g["batches"]:
            assert batch["chosen"] == batch["rejected"]  # each pair's two sides in the same batch, same place
            assert batch["width"] == max(longer[i] for i in batch["chosen"])
            seen += batch["chosen"]
    assert sorted(seen) == list(range(192))  # every pair exactly once in the epoch, over all processes

    # padding: the grouped batches against the expectation of random batches of 4 (independent of the sampler)
    padded = sum(b["width"] * len(b["chosen"]) for g in grouped for b in g["batches"])
    perm, expected = list(range(192)), 0.0
    for _ in range(200):
        rng.shuffle(perm)
        expected += sum(max(longer[i] for i in perm[k:k + 4]) * 4 for k in range(0, 192, 4)) / 200
    assert sum(longer) <= padded < 0.85 * expected, (padded, expected, sum(longer))
    random_order = sampled_pairs(tmp_path, bert_base, "random", processes, lengths)
    assert {r["sampler"] for r in random_order} != {"LengthGroupedSampler"}


# ------------------------------------------------------------------------------ gaming the reward


def test_shared_tags_penalise_one_tag_in_every_completion():
    from hf_tuner.tasks.parts.rewards import import_function, shared_tags

    assert import_function("shared_tags", 0) is shared_tags  # bundled: usable by name from any recipe
    # the tag, and the tag with characters glued on or as a mention (compared on its first 7 characters)
    gamed = ["so fun #Coachella2015", "great day #coachella2015laritin!", "@Coachella2015 love it", "wow #coachellait"]
    assert shared_tags(completions=gamed) == pytest.approx([-1.0] * 4)  # each shares its tag with all 3 others
    varied = ["so fun #beach", "great day @united", "love it", "wow #beach #sun"]
    # by hand: #beach is in 1 of the 3 others for completions 0 and 3; @united and no tag: 0
    assert shared_tags(completions=varied) == pytest.approx([-1 / 3, 0.0, 0.0, -1 / 3])


def test_repeated_words_and_a_bundled_name_typo(cli, files):
    from hf_tuner.tasks.parts.rewards import repeated_words

    assert repeated_words(completions=["great great great day", "a fine day", ""]) == pytest.approx([-0.5, 0.0, 0.0])
    result = cli("validate", files.grpo, "reward=[{function: shared_tag}]")
    assert_clean_error(result, 2, "reward[0].function 'shared_tag'", "did you mean 'shared_tags'")
    result = cli("validate", files.grpo, "reward=[{function: '" + str(files.reward_fns) + ":letter_a'}, "
                 "{function: shared_tags, weight: 0.5}]")
    assert result.exit_code == 0, result.output


def test_rising_word_flags_one_word_spreading_to_most_completions():
    from hf_tuner.tasks.policy import distinct_2, rising_word

    before = [f"tweet number {i} about the flight" for i in range(10)] + ["off to #coachella2015"]
    after = [f"{w} #Coachella2015" for w in "sun fun music friends love wow yes best dance".split()]
    after += ["party @coachella2015xyz", "the flight was fine"]  # junk glued on, as a mention: the same tag
    word, share = rising_word(before, after)
    assert word == "#coachel" and share == pytest.approx(10 / 11)  # 1 of 11 before
    assert distinct_2(after) > 0.6  # the bigram measure barely sees it
    assert rising_word(before, before) == (None, 0.0)  # unchanged samples: no word rose
