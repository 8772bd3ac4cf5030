"""Conversations: lists of `{role, content}` messages rendered with the tokenizer's chat template, and
which characters of the rendered text carry the loss.

The trained part of an assistant turn is found by rendering, not by a template's markers: the
conversation up to that turn with the generation prompt (`add_generation_prompt=True`) must be a
prefix of the conversation up to and including the turn; what the turn adds after that prefix (its
content and the template's end-of-turn token, trailing whitespace left out) is trained. That works
for every template that renders a conversation's turns the same way as its prefixes (ChatML, Llama,
Qwen, SmolLM, Zephyr, ...); a template that does not is an error that says so.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ...errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")


def is_conversation(value: Any) -> bool:
    """True for a list of {"role", "content"} messages (what a `messages` cell holds)."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


def check_messages(value: Any, where: str, need_assistant: bool = True) -> list[dict[str, str]]:
    """A `messages` cell as a list of {"role", "content"} dicts, or a DataError naming `where` (the
    file or split, the row and the column) and the fix."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: expected a list of {{role, content}} messages, got {type(value).__name__}"
                        f"{'' if value else ' (empty)'}: each row holds a list such as "
                        '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]')
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: message {i} is not a {{role, content}} object ({str(m)[:60]!r}): "
                            "give each message a role and a content")
        if m["role"] not in ROLES:
            raise DataError(f"{where}: message {i} has an unknown role '{m['role']}': roles are {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: message {i}'s content is {type(m['content']).__name__}, not text")
        out.append({"role": m["role"], "content": m["content"]})
    if need_assistant and not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{where}: the conversation has no assistant turn, so nothing would be trained: drop the row, "
                        "add the reply, or set data.assistant_only_loss=false")
    return out


def require_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the data is conversational (lists of messages) but the model's tokenizer has no chat template: "
                          "set model.tokenizer.chat_template: chatml (built in), a Jinja template or a .jinja file")


def render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def trained_ranges(tokenizer: Any, messages: Sequence[dict[str, str]], first: int = 0,
                   assistant_only: bool = True) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character ranges that carry loss: each assistant turn from
    message `first` on (what it adds to the rendered prefix; see the module docstring), or with
    `assistant_only` false the whole conversation."""
    text = render(tokenizer, messages)
    if not assistant_only:
        return text, [(0, len(text.rstrip()))]
    ranges = []
    for i in range(first, len(messages)):
        if messages[i]["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True)
        upto = render(tokenizer, messages[:i + 1])
        if not (upto.startswith(before) and text.startswith(upto)):
            raise ConfigError("the chat template renders a conversation's turns differently from its prefixes, so the "
                              "assistant's part cannot be found: set data.assistant_only_loss=false, or use another "
                              "template (model.tokenizer.chat_template)")
        end = len(before) + len(upto[len(before):].rstrip())
        if end > len(before):
            ranges.append((len(before), end))
    return text, ranges


def encode_trained(tokenizer: Any, text: str, ranges: list[tuple[int, int]], ignore: int) -> tuple[list[int], list[int]]:
    """Token ids of a rendered text (its special tokens are in the text) and labels: the token where a
    token begins inside a trained range, else `ignore`."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels = list(enc["input_ids"]), []
    for token, (s, e) in zip(ids, enc["offset_mapping"]):
        labels.append(token if e > s and any(a <= s < b for a, b in ranges) else ignore)
    return ids, labels


def trained_text(tokenizer: Any, input_ids: Sequence[int], labels: Sequence[int], ignore: int) -> list[str]:
    """The runs of trained tokens of one example, decoded (what `validate --show-examples` prints)."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(input_ids, labels):
        on = label != ignore
        if on and not previous:
            runs.append([])
        if on:
            runs[-1].append(token)
        previous = on
    return [tokenizer.decode(r) for r in runs]


def last_user_turn(messages: list[dict[str, str]]) -> Optional[list[dict[str, str]]]:
    """A conversation up to and including its last user message (what `predict -f chats.jsonl` answers)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    return None if last is None else messages[:last + 1]


def prompt_text(tokenizer: Any, prompt: Any) -> str:
    """A prompt as the model reads it before its completion: a conversation rendered with the chat
    template and its generation prompt, a text as it is."""
    if is_conversation(prompt):
        require_template(tokenizer)
        return render(tokenizer, prompt, generation_prompt=True)
    return str(prompt)
