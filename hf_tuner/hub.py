"""`push`: stage a copy of a finished run (optionally merging LoRA and checking the merge), write
its model card for the repository (see `card`) and upload it with huggingface_hub.

A push never modifies the run folder: everything is staged in a temporary folder and uploaded from
there with `huggingface_hub`. The token is never printed, logged or written anywhere.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from . import rundir
from .card import REPO_ID, base_model_id, write_model_card
from .config import RunConfig
from .errors import ConfigError, HfTunerError, HubError

DEFAULT_ENDPOINT = "https://huggingface.co"


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
    from .recipes import load_run

    run = load_run(run_dir)
    path, cfg, summary = run.path, run.cfg, run.summary
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


def stage_run(run_dir: Path, cfg: RunConfig, summary: rundir.RunSummary, staging: Path, upload: str,
              merge_lora: bool, repo_id: str, on_status: Callable[[str], None] = print) -> None:
    """Put what the repo should hold into `staging`: the model (merged or adapter), its tokenizer or
    processor, config.yaml / metrics.json / loss plot, and a model card written for `repo_id`."""
    if upload == "adapter":
        adapter = rundir.adapter_dir(run_dir)
        if adapter is None:
            raise ConfigError(f"the run's adapter has no adapter_config.json ({run_dir / rundir.ADAPTER_DIR})")
        for item in adapter.iterdir():
            _copy(item, staging / item.name)
        _fix_adapter_base(staging / "adapter_config.json", cfg)
        for name in rundir.RUN_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / name)
    else:
        if merge_lora or not rundir.has_full_weights(run_dir):
            merge_and_verify(run_dir, cfg, staging, on_status)
        for item in run_dir.iterdir():
            if item.is_file() and item.name not in rundir.LOCAL_ONLY and not (staging / item.name).exists():
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
    adapter model's outputs on the task's probe inputs. Returns the largest difference seen."""
    import torch

    from .tasks import get_task

    family = get_task(cfg.task).family
    on_status("Merging the LoRA adapter into the base model ...")
    adapted = family.load_trained(run_dir, adapter=True)
    inputs = family.probe_inputs(adapted)
    with torch.no_grad():
        expected = _logits(adapted.model, inputs)
    merged = adapted.model.merge_and_unload()
    merged.save_pretrained(dest)
    reloaded = family.auto_class().from_pretrained(dest).eval()
    with torch.no_grad():
        got = _logits(reloaded, inputs)
    diff = float((expected - got).abs().max())
    scale = float(expected.abs().max()) or 1.0
    if not diff <= atol * max(1.0, scale):
        raise HubError(f"the merged model's outputs differ from the adapter model's by {diff:.2e}: not pushing")
    on_status(f"Merged model checked: outputs match the adapter model (max difference {diff:.1e})")
    return diff


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
