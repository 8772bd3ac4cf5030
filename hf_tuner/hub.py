"""The Hub side of a run: the model card (README.md with YAML metadata and `model-index`) and
`push` (stage a copy of the run, optionally merge LoRA and check the merge, upload it).

A push never modifies the run folder: everything is staged in a temporary folder and uploaded from
there with `huggingface_hub`. The token is never printed, logged or written anywhere.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from .config import RunConfig
from .errors import ConfigError, HfTunerError, HubError

TASK_PIPELINE = {
    "text-classification": "text-classification",
    "causal-lm": "text-generation",
    "seq2seq": "text2text-generation",
    "image-classification": "image-classification",
}
TASK_TITLES = {
    "text-classification": "Text Classification",
    "causal-lm": "Text Generation",
    "seq2seq": "Text2Text Generation",
    "image-classification": "Image Classification",
}
# Where a `packaged:` model came from on the Hub (for `base_model` and an uploaded adapter's config).
PACKAGED_HUB_IDS = {"packaged:all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# Run-folder files that stay local: the card is re-written for the repo, the summary holds local paths.
LOCAL_ONLY = {"README.md", "summary.json"}
RUN_FILES = ("config.yaml", "metrics.json", "loss.png", "log_history.json")


# ------------------------------------------------------------------------------------------ model card


def _is_hub_id(name: Optional[str]) -> bool:
    return bool(name) and bool(REPO_ID.match(name)) and not Path(name).expanduser().exists() and "." not in Path(name).name


def base_model_id(cfg: RunConfig) -> Optional[str]:
    """The Hub id of the model a run started from (None when built from scratch or local)."""
    name = cfg.model.name_or_path
    if name in PACKAGED_HUB_IDS:
        return PACKAGED_HUB_IDS[name]
    return name if _is_hub_id(name) else None


def read_eval_results(run_dir: Path) -> dict[str, Any]:
    """The "eval" section of a run's metrics.json (what `hf-tuner eval` recorded)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text()).get("eval", {}) or {}
    except (json.JSONDecodeError, AttributeError):
        return {}


def _dataset_label(source: Optional[str]) -> str:
    """A data source as shown on a card: Hub ids and packaged names as given, local paths by file name."""
    if not source:
        return "unknown"
    if source.startswith(("packaged:",)) or _is_hub_id(source):
        return source
    return Path(source.split(" [")[0]).name or source


def _results(cfg: RunConfig, summary: dict[str, Any], evals: dict[str, Any]) -> list[dict[str, Any]]:
    """Every set of metrics a card reports: the training validation split, then each `eval`."""
    out = []
    if summary.get("metrics"):
        out.append({"name": "validation", "dataset": cfg.data.train, "config": cfg.data.config_name,
                    "split": "validation", "metrics": summary["metrics"]})
    for name, entry in evals.items():
        if out and entry.get("split") == "validation" and entry.get("data") == cfg.data.train and entry.get("metrics") == out[0]["metrics"]:
            continue  # the run's own validation split, re-evaluated: already reported
        out.append({"name": name, "dataset": entry.get("data") or name, "config": entry.get("config"),
                    "split": entry.get("split"), "metrics": entry.get("metrics", {}), "rows": entry.get("rows")})
    return out


def card_metadata(cfg: RunConfig, summary: dict[str, Any], evals: Optional[dict[str, Any]] = None,
                  model_name: Optional[str] = None, upload: str = "merged") -> dict[str, Any]:
    """The YAML front matter of a run's model card, `model-index` included (huggingface_hub's format)."""
    from huggingface_hub import EvalResult, ModelCardData

    adapter_only = cfg.method.name == "lora" and (upload == "adapter" or not cfg.method.save_merged)
    datasets = [s for s in (cfg.data.train, cfg.data.validation) if _is_hub_id(s)]
    datasets += [e.get("data") for e in (evals or {}).values() if _is_hub_id(e.get("data"))]
    eval_results = []
    for result in _results(cfg, summary, evals or {}):
        for metric, value in result["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                eval_results.append(EvalResult(
                    task_type=TASK_PIPELINE.get(cfg.task, cfg.task), task_name=TASK_TITLES.get(cfg.task),
                    dataset_type=_dataset_label(result["dataset"]), dataset_name=result["name"],
                    dataset_config=result["config"], dataset_split=result["split"],
                    metric_type=metric, metric_value=value, metric_name=metric,
                ))
    data = ModelCardData(
        library_name="peft" if adapter_only else "transformers",
        pipeline_tag=TASK_PIPELINE.get(cfg.task, cfg.task),
        tags=["hf-tuner", cfg.task, cfg.method.name],
        license=cfg.hub.license,
        base_model=base_model_id(cfg),
        datasets=sorted(set(datasets)) or None,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    return data.to_dict()


def write_model_card(run_dir: Path, cfg: RunConfig, summary: dict[str, Any], dest: Optional[Path] = None,
                     repo_id: Optional[str] = None, upload: str = "merged") -> Path:
    """Write README.md (into `dest`, default the run folder): metadata with `model-index`, the
    validation and `hf-tuner eval` results, how to load it, the command and config that made it."""
    evals = read_eval_results(run_dir)
    name = repo_id.split("/")[-1] if repo_id else Path(summary.get("output_dir", run_dir)).name
    meta = card_metadata(cfg, summary, evals, name, upload)
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
        f"# {name}", "",
        f"{(cfg.description or cfg.task).rstrip('.')}. Fine-tuned with hf-tuner "
        f"({cfg.method.name}) from `{base_model_id(cfg) or summary.get('model', cfg.model.name_or_path)}`.", "",
        "## Results", "",
    ]
    metrics = summary.get("metrics") or {}
    before = summary.get("metrics_before") or {}
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
    lines += ["```", "", "## Reproduce", "", "```bash", summary.get("command", ""), "```", "",
              "## Training config", "", "```yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).strip(), "```", ""]
    path = Path(dest or run_dir) / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _head_kwargs(run_dir: Path) -> str:
    """`, num_labels=2, id2label={...}` for a classifier's base model (what an adapter's head needs)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return ""
    config = json.loads(path.read_text())
    id2label = config.get("id2label")
    if not id2label or all(v == f"LABEL_{k}" for k, v in id2label.items()):
        return ""
    id2label = {int(k): v for k, v in id2label.items()}
    return f", num_labels={len(id2label)}, id2label={id2label!r}"


def _usage(cfg: RunConfig, where: str, upload: str = "merged", head: str = "") -> list[str]:
    from .tasks import get_task

    cls = get_task(cfg.task).auto_model
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


# ------------------------------------------------------------------------------------------ push


def resolve_token(token: Optional[str]) -> str:
    """--token, else $HF_TOKEN, else the `hf auth login` cache; a HubError when there is none."""
    if token:
        return token
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise HubError("no Hub token: pass --token, set HF_TOKEN, or run `hf auth login`")
    return found


def resolve_endpoint(endpoint: Optional[str], cfg: Optional[RunConfig] = None) -> str:
    """--endpoint, else the recipe's hub.endpoint, else $HF_ENDPOINT, else huggingface.co."""
    value = endpoint or (cfg.hub.endpoint if cfg is not None else None) or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"Hub endpoint '{value}' is not a URL (e.g. https://huggingface.co)")
    return value.rstrip("/")


def push(run_dir: str | Path, repo_id: Optional[str] = None, private: Optional[bool] = None,
         revision: Optional[str] = None, upload: Optional[str] = None, merge_lora: bool = False,
         commit_message: Optional[str] = None, token: Optional[str] = None, endpoint: Optional[str] = None,
         on_status: Callable[[str], None] = print) -> str:
    """Upload a finished run to the Hub; returns the repo URL. Options left as None come from the
    run's `hub:` recipe section. `upload` is "merged" (the full model) or "adapter" (LoRA adapter +
    tokenizer + card); `merge_lora` re-merges base + adapter and checks the merged outputs first."""
    from .run import load_run

    path, cfg, summary = load_run(run_dir)
    repo_id = repo_id or cfg.hub.repo_id
    if not repo_id:
        raise ConfigError("no repository to push to: pass --repo-id ORG/NAME (or set hub.repo_id in the recipe)")
    if not REPO_ID.match(repo_id):
        raise ConfigError(f"--repo-id '{repo_id}' is not a Hub repository id (NAME or ORG/NAME: letters, digits, '-', '_', '.')")
    private = cfg.hub.private if private is None else private
    revision = revision or cfg.hub.revision
    upload = upload or cfg.hub.upload
    is_lora = cfg.method.name == "lora"
    if upload == "adapter" and not is_lora:
        raise ConfigError(f"--adapter-only: {path} is a {cfg.method.name} fine-tuning run, it has no LoRA adapter")
    if merge_lora and not is_lora:
        raise ConfigError(f"--merge-lora: {path} is a {cfg.method.name} fine-tuning run, there is no adapter to merge")
    if merge_lora and upload == "adapter":
        raise ConfigError("--merge-lora and --adapter-only exclude each other")
    token = resolve_token(token)
    endpoint = resolve_endpoint(endpoint, cfg)
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise HubError("offline mode is on (HF_HUB_OFFLINE=1): unset it to push")
    with tempfile.TemporaryDirectory(prefix="hf-tuner-push-") as tmp:
        staging = Path(tmp)
        stage_run(path, cfg, summary, staging, upload, merge_lora, repo_id, on_status)
        _check_no_secret(staging, token)
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        on_status(f"Uploading {len(files)} files to {repo_id}{'@' + revision if revision else ''} on {endpoint} ...")
        return upload_folder(staging, repo_id, private, revision, commit_message or f"Upload {path.name} ({cfg.task}, {cfg.method.name}) with hf-tuner",
                             token, endpoint)


def push_after_training(run_dir: str | Path, cfg: RunConfig, on_status: Callable[[str], None] = print) -> str:
    """`hub.push: true`: push a just-finished run as its recipe says. A failure leaves the run as is
    and says so in its one line."""
    try:
        return push(run_dir, on_status=on_status)
    except HfTunerError as exc:
        raise HubError(f"training finished and {run_dir} is saved, but the push failed: {exc}") from None


def stage_run(run_dir: Path, cfg: RunConfig, summary: dict[str, Any], staging: Path, upload: str,
              merge_lora: bool, repo_id: str, on_status: Callable[[str], None] = print) -> None:
    """Put what the repo should hold into `staging`: the model (merged or adapter), its tokenizer or
    processor, config.yaml / metrics.json / loss plot, and a model card written for `repo_id`."""
    from .modeling import ADAPTER_DIR

    has_weights = (run_dir / "config.json").is_file() and any(run_dir.glob("*.safetensors"))
    adapter_dir = run_dir / ADAPTER_DIR
    if upload == "adapter":
        for item in adapter_dir.iterdir():
            _copy(item, staging / item.name)
        _fix_adapter_base(staging / "adapter_config.json", cfg)
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / name)
    else:
        if merge_lora or not has_weights:
            merge_and_verify(run_dir, cfg, staging, on_status)
        for item in run_dir.iterdir():
            if item.is_file() and item.name not in LOCAL_ONLY and not (staging / item.name).exists():
                shutil.copy2(item, staging / item.name)
    write_model_card(run_dir, cfg, summary, dest=staging, repo_id=repo_id, upload=upload)


def _copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copy2(src, dest)


def _fix_adapter_base(path: Path, cfg: RunConfig) -> None:
    """An uploaded adapter names its base model by Hub id, not by a path on this machine."""
    if not path.is_file():
        raise ConfigError(f"the run's adapter has no adapter_config.json ({path.parent})")
    base = base_model_id(cfg)
    if base:
        data = json.loads(path.read_text())
        data["base_model_name_or_path"] = base
        path.write_text(json.dumps(data, indent=2))


def merge_and_verify(run_dir: Path, cfg: RunConfig, dest: Path, on_status: Callable[[str], None] = print,
                     atol: float = 1e-4) -> float:
    """Load base + adapter, merge, save to `dest`, reload the merged copy and check it gives the
    adapter model's outputs on a few inputs. Returns the largest difference seen."""
    import torch

    from .modeling import load_trained
    from .tasks import get_task

    auto = get_task(cfg.task)(cfg).auto_class()
    on_status("Merging the LoRA adapter into the base model ...")
    adapted = load_trained(auto, run_dir, adapter=True).eval()
    inputs = probe_inputs(run_dir, cfg, adapted)
    with torch.no_grad():
        expected = _logits(adapted, inputs)
    merged = adapted.merge_and_unload()
    merged.save_pretrained(dest)
    reloaded = auto.from_pretrained(dest).eval()
    with torch.no_grad():
        got = _logits(reloaded, inputs)
    diff = float((expected - got).abs().max())
    scale = float(expected.abs().max()) or 1.0
    if not diff <= atol * max(1.0, scale):
        raise HubError(f"the merged model's outputs differ from the adapter model's by {diff:.2e}: not pushing")
    on_status(f"Merged model checked: outputs match the adapter model (max difference {diff:.1e})")
    return diff


def probe_inputs(run_dir: Path, cfg: RunConfig, model: Any) -> dict[str, Any]:
    """A few model inputs to compare two models on: texts through the run's tokenizer, or random
    images of the model's size."""
    import torch

    config = model.config
    if cfg.task == "image-classification":
        size = getattr(config, "image_size", 224)
        size = size if isinstance(size, int) else size[0]
        generator = torch.Generator().manual_seed(0)
        return {"pixel_values": torch.rand(3, getattr(config, "num_channels", 3), size, size, generator=generator)}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    texts = ["a quick check of the merged weights", "the second probe is a somewhat longer sentence than the first one",
             "short"]
    padding = tokenizer.pad_token is not None
    enc = tokenizer(texts if padding else texts[:1], padding=padding, truncation=True, max_length=32, return_tensors="pt")
    inputs = dict(enc)
    if getattr(config, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = enc["input_ids"][:, :4]
    return inputs


def _logits(model: Any, inputs: dict[str, Any]):
    out = model(**inputs)
    return (out.logits if hasattr(out, "logits") else out[0]).float()


def _check_no_secret(staging: Path, token: str) -> None:
    """Refuse to upload anything that contains the token (a last line of defence)."""
    needle = token.encode("utf-8")
    for p in staging.rglob("*"):
        if p.is_file() and needle in p.read_bytes():
            raise HubError(f"{p.name} contains the Hub token: not pushing")


def upload_folder(folder: Path, repo_id: str, private: bool, revision: Optional[str], commit_message: str,
                  token: str, endpoint: str) -> str:
    """create_repo (exist_ok) + branch + upload_folder through huggingface_hub; returns the repo URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import logging as hub_logging

    # huggingface_hub logs a WARNING per retried request; the outcome is reported in one line instead
    hub_logging.set_verbosity_error()
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=commit_message,
                          repo_type="model")
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise HubError(describe_hub_error(exc, endpoint, repo_id, token)) from None
    url = f"{endpoint}/{repo_id}"
    return f"{url}/tree/{revision}" if revision else url


def describe_hub_error(exc: BaseException, endpoint: str, repo_id: str, token: Optional[str] = None) -> str:
    """One line for a failed Hub call: what happened and what to do (never the token)."""
    from .secrets import redact

    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if status == 401:
        msg = f"the Hub at {endpoint} rejected the token (401 Unauthorized): check --token / HF_TOKEN or run `hf auth login`"
    elif status == 403:
        msg = f"the Hub refused the push to {repo_id} (403 Forbidden): the token has no write access to it"
    elif status == 404:
        msg = f"the Hub at {endpoint} does not know {repo_id} or that revision (404)"
    elif status == 409:
        msg = f"the Hub refused the push to {repo_id} (409 Conflict): {text}"
    elif status is not None and status >= 500:
        msg = f"the Hub at {endpoint} failed ({status} server error): try again later"
    elif type(exc).__name__ == "OfflineModeIsEnabled":
        msg = "offline mode is on (HF_HUB_OFFLINE=1): unset it to push"
    elif (status is None and any(w in type(exc).__name__ for w in ("Connect", "Timeout", "Network", "Protocol"))) or isinstance(exc, OSError):
        msg = f"cannot reach the Hub at {endpoint}: {type(exc).__name__}: {text}"
    else:
        msg = f"push to {repo_id} failed: {type(exc).__name__}: {text}"
    return redact(msg, token)
