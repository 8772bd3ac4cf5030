"""The model card of a run (README.md): YAML metadata with `model-index` (huggingface_hub's
format), the validation and `hf-tuner eval` results, how to load the model, and the command and
config that made it. Written into the run folder after training and after each `eval`, and again
for a Hub repository by `push`. The task supplies its pipeline tag, title and Auto class.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import yaml

from .config import RunConfig
from .rundir import CARD, RunSummary, read_eval_results, read_json
from .tasks import get_task

# Where a `packaged:` model came from on the Hub (for `base_model` and an uploaded adapter's config).
PACKAGED_HUB_IDS = {"packaged:all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def is_hub_id(name: Optional[str]) -> bool:
    return bool(name) and bool(REPO_ID.match(name)) and not Path(name).expanduser().exists() and "." not in Path(name).name


def base_model_id(cfg: RunConfig) -> Optional[str]:
    """The Hub id of the model a run started from (None when built from scratch or local)."""
    name = cfg.model.name_or_path
    if name in PACKAGED_HUB_IDS:
        return PACKAGED_HUB_IDS[name]
    return name if is_hub_id(name) else None


def _dataset_label(source: Optional[str]) -> str:
    """A data source as shown on a card: Hub ids and packaged names as given, local paths by file name."""
    if not source:
        return "unknown"
    if source.startswith(("packaged:",)) or is_hub_id(source):
        return source
    return Path(source.split(" [")[0]).name or source


def _results(cfg: RunConfig, summary: RunSummary, evals: dict[str, Any]) -> list[dict[str, Any]]:
    """Every set of metrics a card reports: the training validation split, then each `eval`."""
    out = []
    if summary.metrics:
        out.append({"name": "validation", "dataset": cfg.data.train, "config": cfg.data.config_name,
                    "split": "validation", "metrics": summary.metrics})
    for name, entry in evals.items():
        if out and entry.get("split") == "validation" and entry.get("data") == cfg.data.train and entry.get("metrics") == out[0]["metrics"]:
            continue  # the run's own validation split, re-evaluated: already reported
        out.append({"name": name, "dataset": entry.get("data") or name, "config": entry.get("config"),
                    "split": entry.get("split"), "metrics": entry.get("metrics", {}), "rows": entry.get("rows")})
    return out


def card_metadata(cfg: RunConfig, summary: RunSummary, evals: Optional[dict[str, Any]] = None,
                  model_name: Optional[str] = None, upload: str = "merged") -> dict[str, Any]:
    """The YAML front matter of a run's model card, `model-index` included (huggingface_hub's format)."""
    from huggingface_hub import EvalResult, ModelCardData

    task = get_task(cfg.task)
    adapter_only = cfg.method.name == "lora" and (upload == "adapter" or not cfg.method.save_merged)
    datasets = [s for s in (cfg.data.train, cfg.data.validation) if is_hub_id(s)]
    datasets += [e.get("data") for e in (evals or {}).values() if is_hub_id(e.get("data"))]
    eval_results = []
    for result in _results(cfg, summary, evals or {}):
        for metric, value in result["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                eval_results.append(EvalResult(
                    task_type=task.card.pipeline_tag, task_name=task.card.title,
                    dataset_type=_dataset_label(result["dataset"]), dataset_name=result["name"],
                    dataset_config=result["config"], dataset_split=result["split"],
                    metric_type=metric, metric_value=value, metric_name=metric,
                ))
    data = ModelCardData(
        library_name="peft" if adapter_only else "transformers",
        pipeline_tag=task.card.pipeline_tag,
        tags=["hf-tuner", cfg.task, cfg.method.name],
        license=cfg.hub.license,
        base_model=base_model_id(cfg),
        datasets=sorted(set(datasets)) or None,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    return data.to_dict()


def write_model_card(run_dir: Path, cfg: RunConfig, summary: RunSummary, dest: Optional[Path] = None,
                     repo_id: Optional[str] = None, upload: str = "merged") -> Path:
    """Write README.md (into `dest`, default the run folder): metadata with `model-index`, the
    validation and `hf-tuner eval` results, how to load it, the command and config that made it."""
    evals = read_eval_results(run_dir)
    name = repo_id.split("/")[-1] if repo_id else Path(summary.output_dir or run_dir).name
    meta = card_metadata(cfg, summary, evals, name, upload)
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
        f"# {name}", "",
        f"{(cfg.description or cfg.task).rstrip('.')}. Fine-tuned with hf-tuner "
        f"({cfg.method.name}) from `{base_model_id(cfg) or summary.model or cfg.model.name_or_path}`.", "",
        "## Results", "",
    ]
    metrics = summary.metrics or {}
    before = summary.metrics_before or {}
    if metrics:
        lines += ["Validation split used in training:", "", "| metric | before training | after training |", "|---|---|---|"]
        for key, value in metrics.items():
            lines.append(f"| {key} | {_fmt(before.get(key))} | {_fmt(value)} |")
    if evals:
        keys = sorted({k for e in evals.values() for k, v in e.get("metrics", {}).items() if isinstance(v, (int, float))})
        lines += ["", "Evaluations (`hf-tuner eval`):", "", "| data | split | rows | " + " | ".join(keys) + " |",
                  "|---|---|---|" + "---|" * len(keys)]
        for ename, e in evals.items():
            values = " | ".join(_fmt(e.get("metrics", {}).get(k)) for k in keys)
            lines.append(f"| {ename} ({_dataset_label(e.get('data'))}) | {e.get('split') or '-'} | {e.get('rows', '-')} | {values} |")
    lines += ["", "## Use it", "", "```python"]
    lines += _usage(cfg, repo_id or "path/or/repo-id", upload, _head_kwargs(run_dir))
    lines += ["```", "", "## Reproduce", "", "```bash", summary.command, "```", "",
              "## Training config", "", "```yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).strip(), "```", ""]
    path = Path(dest or run_dir) / CARD
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _head_kwargs(run_dir: Path) -> str:
    """`, num_labels=2, id2label={...}` for a classifier's base model (what an adapter's head needs)."""
    config = read_json(Path(run_dir) / "config.json")
    if not config:
        return ""
    id2label = config.get("id2label")
    if not id2label or all(v == f"LABEL_{k}" for k, v in id2label.items()):
        return ""
    id2label = {int(k): v for k, v in id2label.items()}
    return f", num_labels={len(id2label)}, id2label={id2label!r}"


def _usage(cfg: RunConfig, where: str, upload: str = "merged", head: str = "") -> list[str]:
    cls = get_task(cfg.task).family.auto_model
    if cfg.method.name == "lora" and upload == "adapter":
        base = base_model_id(cfg) or "BASE_MODEL"
        return ["from peft import PeftModel", f"from transformers import {cls}",
                f'base = {cls}.from_pretrained("{base}"{head})',
                f'model = PeftModel.from_pretrained(base, "{where}")']
    return [f"from transformers import {cls}", f'model = {cls}.from_pretrained("{where}")']


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
