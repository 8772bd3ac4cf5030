"""The Hub side of a run: the model card (README.md with YAML metadata) and pushing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .config import RunConfig

TASK_PIPELINE = {
    "text-classification": "text-classification",
    "causal-lm": "text-generation",
    "seq2seq": "text2text-generation",
    "image-classification": "image-classification",
}


def card_metadata(cfg: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """The YAML front matter of a run's model card."""
    meta: dict[str, Any] = {
        "library_name": "peft" if cfg.method.name == "lora" and not cfg.method.save_merged else "transformers",
        "pipeline_tag": TASK_PIPELINE.get(cfg.task, cfg.task),
        "tags": ["hf-tuner", cfg.task, cfg.method.name],
    }
    if cfg.hub.license:
        meta["license"] = cfg.hub.license
    base = cfg.model.name_or_path
    if base and not base.startswith(("packaged:", "/", ".", "~")):
        meta["base_model"] = base
    datasets = [s for s in (cfg.data.train, cfg.data.validation) if s and not s.startswith(("packaged:", "/", ".", "~")) and "." not in Path(s).name]
    if datasets:
        meta["datasets"] = sorted(set(datasets))
    return meta


def write_model_card(run_dir: Path, cfg: RunConfig, summary: dict[str, Any]) -> Path:
    """Write README.md into the run folder: metadata, results, how to load, how to reproduce."""
    meta = card_metadata(cfg, summary)
    name = Path(summary.get("output_dir", run_dir)).name
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
        f"# {name}", "",
        f"{cfg.description or cfg.task} Fine-tuned with [hf-tuner](https://github.com/) "
        f"({cfg.method.name}) from `{summary.get('model', cfg.model.name_or_path)}`.", "",
        "## Results", "",
    ]
    metrics = summary.get("metrics") or {}
    before = summary.get("metrics_before") or {}
    if metrics:
        lines += ["| metric | before training | after training |", "|---|---|---|"]
        for key, value in metrics.items():
            lines.append(f"| {key} | {_fmt(before.get(key))} | {_fmt(value)} |")
    lines += ["", "## Use it", "", "```python"]
    lines += _usage(cfg)
    lines += ["```", "", "## Reproduce", "", "```bash", summary.get("command", ""), "```", "",
              "## Training config", "", "```yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).strip(), "```", ""]
    path = Path(run_dir) / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _usage(cfg: RunConfig) -> list[str]:
    from .tasks import get_task

    cls = get_task(cfg.task).auto_model
    return [f"from transformers import {cls}", f'model = {cls}.from_pretrained("path/or/repo-id")']


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
