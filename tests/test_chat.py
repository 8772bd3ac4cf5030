"""Conversational fine-tuning in `causal-lm`: the chat template renders `messages`, the loss falls on
the assistant's turns only (checked token by token against a string search of the rendered text),
packing keeps that mask, bad conversations fail with one line, and a chat run answers `--message`
as a plain transformers pipeline does."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import HUB_TOKEN, Result, assert_clean_error

IGNORE = -100
CONVERSATION = [
    {"role": "system", "content": "You write short tweets."},
    {"role": "user", "content": "Write a positive tweet about Apple."},
    {"role": "assistant", "content": "I love my new iphone, the camera is great"},
    {"role": "user", "content": "Now a negative one."},
    {"role": "assistant", "content": "worst flight ever, two hours at the gate"},
]
TEXTS = ["I love my new iphone the camera is great", "worst flight ever two hours at the gate",
         "Write a positive tweet about Apple", "Now a negative one", "You write short tweets"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    from hf_tuner.modeling import set_chat_template, train_tokenizer

    return set_chat_template(train_tokenizer(TEXTS, "byte-level-bpe", 300, 1, "causal"), "chatml")


def encode(tokenizer, rows, assistant_only=True, max_length=512, columns=None):
    from hf_tuner.tasks.causal_lm import conversation_tokenizer

    columns = columns or {"messages_column": "messages"}
    batch = {"messages": rows} if "messages_column" in columns else rows
    return conversation_tokenizer(tokenizer, max_length, columns, assistant_only)(batch)


def expected_ranges(text: str, contents: list[str], end: str = "<|im_end|>") -> list[tuple[int, int]]:
    """Independent of the code under test: each assistant content found in the rendered text by string
    search (in order, after the assistant header), with the end-of-turn token after it."""
    ranges, at = [], 0
    for content in contents:
        start = text.index("<|im_start|>assistant\n" + content, at) + len("<|im_start|>assistant\n")
        stop = start + len(content) + len(end)
        assert text[start + len(content):stop] == end
        ranges.append((start, stop))
        at = stop
    return ranges


# ------------------------------------------------------------------------------ unit: the label mask


def test_the_label_mask_is_the_assistant_turns_found_by_string_search(tokenizer):
    out = encode(tokenizer, [CONVERSATION])
    ids, labels = out["input_ids"][0], out["labels"][0]
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    ranges = expected_ranges(text, [m["content"] for m in CONVERSATION if m["role"] == "assistant"])
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    for token, label, (s, e) in zip(ids, labels, offsets):
        inside = any(a <= s and e <= b for a, b in ranges)
        assert (label == token) if inside else (label == IGNORE), (tokenizer.decode([token]), s, e, label)
    trained = [tokenizer.decode([t]) for t, l in zip(ids, labels) if l != IGNORE]
    assert "".join(trained) == "".join(text[a:b] for a, b in ranges)  # every trained character, none else


def test_the_mask_agrees_with_the_templates_generation_markers(tokenizer):
    """ChatML here carries {% generation %} markers, transformers' own assistant mask (TRL's
    assistant_only_loss): a second, independent computation of the same mask."""
    out = encode(tokenizer, [CONVERSATION])
    mask = tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert [l != IGNORE for l in out["labels"][0]] == [bool(m) for m in mask["assistant_masks"]]


def test_prompt_completion_conversations_train_the_completion_only(tokenizer):
    prompt, completion = CONVERSATION[:4], CONVERSATION[4:]
    out = encode(tokenizer, {"prompt": [prompt], "completion": [completion]},
                 columns={"prompt_column": "prompt", "completion_column": "completion"})
    trained = tokenizer.decode([t for t, l in zip(out["input_ids"][0], out["labels"][0]) if l != IGNORE])
    assert trained == CONVERSATION[4]["content"] + "<|im_end|>"


def test_assistant_only_loss_off_trains_the_whole_conversation(tokenizer):
    out = encode(tokenizer, [CONVERSATION], assistant_only=False)
    labels = out["labels"][0]
    assert labels[0] == IGNORE and all(l != IGNORE for l in labels[1:-1])  # the trailing newline is left out


def test_packing_keeps_the_assistant_mask(tokenizer):
    from hf_tuner.tasks.causal_lm import pack_documents

    rows = [CONVERSATION, CONVERSATION[1:3], CONVERSATION[:2] + CONVERSATION[4:]] * 3
    out = encode(tokenizer, rows)
    blocks = pack_documents(out["input_ids"], out["labels"], 48)
    flat = [l for block in blocks["labels"] for l in block]
    # each conversation's first token is masked anyway (nothing before it): packing changes no label
    assert flat == [l for labels in out["labels"] for l in labels]
    assert sum(l != IGNORE for l in flat) == sum(l != IGNORE for labels in out["labels"] for l in labels) > 0


def test_a_template_that_rewrites_earlier_turns_is_refused(tokenizer):
    import copy

    from hf_tuner.errors import ConfigError

    other = copy.deepcopy(tokenizer)  # a template that counts the turns it renders: a prefix renders differently
    other.chat_template = ("{{ messages | length }} turns\n{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                           "{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(ConfigError, match="assistant_only_loss=false"):
        encode(other, [CONVERSATION])


# ------------------------------------------------------------------------------ bad input, through the CLI


def chats_file(tmp_path: Path, rows: list, name: str = "chats.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = [{"messages": CONVERSATION}, {"messages": CONVERSATION[1:3]}] * 10
SCRATCH = ["model.from_scratch.n_layer=1", "model.from_scratch.n_embd=32", "model.from_scratch.n_head=2",
           "model.tokenizer.vocab_size=300", "data.packing=false", "model.from_scratch.n_positions=256", "data.max_length=256"]


def validate(cli, path: Path, *extra: str) -> Result:
    return cli("validate", "gpt2-tweets", f"data.train={path}", *SCRATCH, *extra)


@pytest.mark.parametrize("row, needles", [
    ({"messages": "hello"}, ("row 3", "list of {role, content}")),
    ({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, ("row 3", "unknown role 'robot'")),
    ({"messages": [{"role": "user", "content": "hi"}]}, ("row 3", "no assistant turn", "assistant_only_loss=false")),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "yo"}]}, ("row 3", "message 0")),
])
def test_a_bad_conversation_names_its_row(cli, tmp_path, row, needles):
    rows = list(GOOD[:3]) + [row] + list(GOOD[3:])
    result = validate(cli, chats_file(tmp_path, rows), "model.tokenizer.chat_template=chatml", "data.validation_size=0.05",
                      "data.max_train_samples=null")
    assert_clean_error(result, 2, "messages", *needles)


def test_a_conversation_without_assistant_turn_trains_under_whole_conversation_loss(cli, tmp_path):
    rows = list(GOOD) + [{"messages": [{"role": "user", "content": "hi"}]}]
    result = validate(cli, chats_file(tmp_path, rows), "model.tokenizer.chat_template=chatml", "data.assistant_only_loss=false")
    assert result.exit_code == 0, result.output


def test_an_unknown_template_name_is_a_clean_error(cli, tmp_path):
    result = validate(cli, chats_file(tmp_path, GOOD), "model.tokenizer.chat_template=chatmel")
    assert_clean_error(result, 2, "chatmel", "chatml")


def test_conversations_need_a_chat_template(cli, tmp_path):
    result = validate(cli, chats_file(tmp_path, GOOD))
    assert_clean_error(result, 2, "no chat template", "model.tokenizer.chat_template: chatml")


def test_validate_shows_the_examples_with_the_trained_part(cli, tmp_path):
    result = validate(cli, chats_file(tmp_path, GOOD), "model.tokenizer.chat_template=chatml", "--show-examples", "2", "--json")
    assert result.exit_code == 0, result.output
    examples = json.loads(result.stdout)["examples"]
    assert len(examples) == 2
    for e in examples:  # the training split's first rows (shuffled): the long conversation or its first exchange
        long = e["text"].startswith("<|im_start|>system\n")
        assert e["trained"] == [m["content"] + "<|im_end|>" for m in (CONVERSATION if long else CONVERSATION[1:3])
                                if m["role"] == "assistant"], e
    shown = validate(cli, chats_file(tmp_path, GOOD), "model.tokenizer.chat_template=chatml", "--show-examples", "1")
    assert shown.exit_code == 0 and f"[[{CONVERSATION[2]['content']}<|im_end|>]]" in shown.stdout, shown.output


def test_predict_inputs_from_messages_and_chat_files(tmp_path):
    from hf_tuner.errors import ConfigError, DataError
    from hf_tuner.predict import gather_inputs

    assert gather_inputs([], messages=["hi"], systems=["be brief"]) == [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]]
    path = chats_file(tmp_path, [{"messages": CONVERSATION}, CONVERSATION[1:2]])
    assert gather_inputs([], str(path)) == [CONVERSATION[:4], CONVERSATION[1:2]]  # cut after the last user turn
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"messages": CONVERSATION}) + "\n\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 3: not JSON"):
        gather_inputs([], str(broken))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        gather_inputs([], str(latin))
    with pytest.raises(ConfigError, match="--system goes with --message"):
        gather_inputs(["x"], systems=["be brief"])


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory) -> tuple[Path, Result]:
    """A tiny gpt2-tweets base, then the gpt2-tweets-chat recipe on it (fewer rows and steps)."""
    from hf_tuner.cli import app

    root = tmp_path_factory.mktemp("chat")
    base = Result(CliRunner().invoke(app, [
        "train", "gpt2-tweets", "model.from_scratch.n_layer=1", "model.from_scratch.n_embd=64", "model.from_scratch.n_head=2",
        "model.tokenizer.vocab_size=1000", "data.max_train_samples=1500", "data.max_eval_samples=80",
        "training.num_train_epochs=1", "training.learning_rate=1e-2", 'training.eval_strategy="no"', "-o", str(root / "base")]))
    assert base.exit_code == 0, base.output
    result = Result(CliRunner().invoke(app, [
        "train", "gpt2-tweets-chat", f"model.name_or_path={root / 'base'}", "data.max_train_samples=1500",
        "data.max_eval_samples=100", "training.num_train_epochs=2", "training.learning_rate=5e-3",
        'training.eval_strategy="no"', "-o", str(root / "chat")]))
    return root / "chat", result


@pytest.mark.slow
def test_a_chat_run_learns_the_assistant_turns_and_answers_as_a_pipeline_does(chat_run, cli, tmp_path, hub):
    import transformers

    out, result = chat_run
    assert result.exit_code == 0, result.output
    gain = json.loads((out / "summary.json").read_text())["improvement"]
    # the assistant tokens' perplexity: a base that never saw ChatML against the chat run
    assert gain["metric"] == "perplexity" and gain["after"] < 0.5 * gain["before"], gain
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in (tokenizer.chat_template or "")

    ask = "Write a negative tweet about an airline."
    result = cli("predict", str(out), "--message", ask, "--system", "You write short tweets.", "--json",
                 "--max-new-tokens", "30")
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)
    messages = [{"role": "system", "content": "You write short tweets."}, {"role": "user", "content": ask}]
    generator = transformers.pipeline("text-generation", model=str(out), tokenizer=str(out))
    theirs = generator(messages, max_new_tokens=30, do_sample=False)[0]["generated_text"][-1]
    assert theirs["role"] == "assistant" and ours["output"] == theirs["content"].strip(), (ours, theirs)

    chats = chats_file(tmp_path, [{"messages": CONVERSATION}, {"messages": messages}])
    result = cli("predict", str(out), "-f", str(chats), "--json", "--max-new-tokens", "30")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["Now a negative one.", ask] and rows[1]["output"] == ours["output"]

    # eval on a conversation file scores the assistant tokens; push sends the template with the tokenizer
    result = cli("eval", str(out), "--data", str(chats_file(tmp_path, GOOD, "eval.jsonl")))
    assert result.exit_code == 0 and "perplexity" in result.stdout, result.output
    result = cli("push", str(out), "--repo-id", "me/chat", "--token", HUB_TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    pushed = hub.files("me/chat")
    assert "<|im_start|>" in pushed["chat_template.jinja"].decode() and "pipeline_tag: text-generation" in pushed["README.md"].decode()
