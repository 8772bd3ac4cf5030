"""`hf-tuner predict`: run a finished run folder's model on raw inputs, whatever its task."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from .modeling import quiet_libraries
from .recipes import load_run
from .tasks import get_task


def predict(run_dir: str, inputs: list[str], **options: Any) -> list[tuple[dict[str, Any], str]]:
    """One (result, printable line) per input. A result is {"input", "label", "top": [...]} for
    classifiers and {"input", "output"} for generators; the run's config says which task it is."""
    run = load_run(run_dir)
    quiet_libraries()
    job = get_task(run.cfg.task).bind(run.cfg)
    loaded = job.family.load_trained(run.path)
    return [(r, job.objective.format_result(r)) for r in job.objective.predict(job, loaded, inputs, **options)]


def gather_inputs(texts: list[str], file: Optional[str] = None, messages: Optional[list[str]] = None,
                  systems: Optional[list[str]] = None) -> list[Any]:
    """What `predict` runs on: the argument texts, each `--message` as a one-turn conversation after
    the `--system` messages, and the lines of `file`: texts, or (a JSONL file of {"messages": [...]}
    objects or bare message lists) conversations, each cut after its last user turn."""
    from .errors import ConfigError, DataError
    from .tasks.parts.chat import check_messages, last_user_turn

    items: list[Any] = list(texts)
    system = [{"role": "system", "content": s} for s in systems or []]
    if systems and not messages:
        raise ConfigError("--system goes with --message: give the user's message with --message \"...\"")
    items += [system + [{"role": "user", "content": m}] for m in messages or []]
    if file:
        path = Path(file).expanduser()
        if not path.is_file():
            raise ConfigError(f"input file not found: {file}")
        try:
            # lines end at "\n" only: a JSON string may hold U+2028 and the like, which splitlines() would cut at
            lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n")]
        except UnicodeDecodeError as exc:
            raise DataError(f"{file} is not UTF-8 text (byte {exc.start}: {exc.reason}): save it as UTF-8") from None
        numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
        if numbered and path.suffix.lower() == ".jsonl" and _is_chat_line(numbered[0][1]):
            for number, line in numbered:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{file} line {number}: not JSON ({exc.msg}): one conversation per line") from None
                value = row.get("messages") if isinstance(row, dict) else row
                conversation = check_messages(value, f"{file} line {number}", need_assistant=False)
                turn = last_user_turn(conversation)
                if turn is None:
                    raise DataError(f"{file} line {number}: the conversation has no user message to answer")
                items.append(turn)
        else:
            items += [line for _, line in numbered]
    if not items:
        raise ConfigError("nothing to predict: give inputs as arguments, --message \"...\" or --file FILE")
    return items


def _is_chat_line(line: str) -> bool:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return False
    return (isinstance(row, dict) and "messages" in row) or (isinstance(row, list) and bool(row) and isinstance(row[0], dict))
