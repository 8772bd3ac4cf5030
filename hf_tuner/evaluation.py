"""`hf-tuner eval`: the metrics of a saved model on a data set or a named benchmark.

Evaluation goes through the same Task plug-in as training (load_data -> load_processing ->
preprocess -> data_collator / compute_metrics / preprocess_logits_for_metrics / extra_metrics) and
the task's own Trainer class in evaluation mode, so every task that can be trained can be evaluated
and the numbers mean the same thing as in `metrics.json`. Classifiers add a per-class report and a
confusion-matrix PNG; causal LMs report perplexity. Results go to a JSON file and, for a run folder,
into `metrics.json` ("eval" section) and the model card.
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import ConfigError, DataError, listing

# Recipe `data.` keys a user may set for an evaluation with --column KEY=VALUE.
COLUMN_KEYS = ("text_column", "text_pair_column", "label_column", "prompt_column", "completion_column",
               "source_column", "target_column", "image_column", "source_prefix", "encoding",
               "max_length", "max_target_length", "config_name", "revision", "labels")


@dataclass
class ModelRef:
    """What MODEL names: a finished run folder (with its recipe) or any model folder / Hub id."""

    name: str
    path: str  # folder (absolute) or Hub id
    run_dir: Optional[Path] = None
    run_cfg: Any = None  # RunConfig of the run
    summary: Optional[dict[str, Any]] = None


def resolve_model_ref(model: str) -> ModelRef:
    """A run folder -> its config and summary; a plain model folder or Hub id otherwise."""
    from .run import CONFIG, load_run

    path = Path(model).expanduser()
    if path.is_dir() and ((path / CONFIG).is_file() or (path / "summary.json").is_file()):
        run_dir, cfg, summary = load_run(path)
        return ModelRef(run_dir.resolve().name, str(run_dir.resolve()), run_dir.resolve(), cfg, summary)
    if path.is_file():
        raise ConfigError(f"{model} is a file: MODEL is a run folder, a model folder or a Hub model id (data goes to --data)")
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ConfigError(f"{model} is neither an hf-tuner run folder (config.yaml) nor a model folder (config.json)")
        return ModelRef(path.resolve().name, str(path.resolve()))
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or path.suffix:
        raise ConfigError(f"model not found: {model} (give a run folder, a model folder or a Hub model id)")
    return ModelRef(model.replace("/", "__"), model)


def parse_columns(items: list[str]) -> dict[str, Any]:
    """`--column text_column=sentence` items -> {"text_column": "sentence"} (values parsed like overrides)."""
    from .config import parse_overrides

    out: dict[str, Any] = {}
    for path, value in parse_overrides(items):
        key = ".".join(path).removeprefix("data.")
        if key not in COLUMN_KEYS:
            from .errors import did_you_mean

            raise ConfigError(f"--column {key}: not a data column key{did_you_mean(key, COLUMN_KEYS)}; keys: {', '.join(COLUMN_KEYS)}")
        out[key] = value
    return out


def data_name(data: Optional[str], split: Optional[str]) -> str:
    """A short file-safe name for an evaluation data source (used for the JSON file and metrics.json)."""
    if data is None:
        return split or "validation"
    path = Path(data)
    name = path.stem if path.suffix or data.startswith((".", "/", "~")) else data.replace("/", "__")
    name = name.removeprefix("packaged:")
    if split and not path.suffix:
        name = f"{name}-{split}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


# ------------------------------------------------------------------------------------------ config


def eval_config(ref: ModelRef, task: str, source: Optional[str], split: Optional[str], columns: dict[str, Any],
                batch_size: Optional[int], max_samples: Optional[int], metrics: Optional[list[str]] = None):
    """The RunConfig an evaluation runs under: the run's recipe (columns, lengths, seed, generation
    settings) with the model pointed at the trained model, no LoRA, and the data replaced by `source`
    (train and validation both read it, so nothing is split off) and its own label set (see
    `align_labels`). `source=None` keeps the run's data as it was split for training."""
    from .config import build_config

    base = ref.run_cfg.to_dict() if ref.run_cfg is not None else {"task": task, "data": {}}
    model = {k: v for k, v in base.get("model", {}).items() if k not in ("from_scratch", "tokenizer", "revision", "name_or_path")}
    model["name_or_path"] = ref.path
    data = dict(base.get("data", {}))
    if source is not None:
        for key in ("validation", "test", "validation_split", "test_split", "test_size", "train_split"):
            data.pop(key, None)
        data.update(train=source, validation=source)
        if split:
            data.update(train_split=split, validation_split=split)
        data["max_train_samples"] = max_samples
        data["max_eval_samples"] = max_samples
        data.pop("labels", None)  # the data's labels, matched to the model's by name
    elif max_samples:
        data["max_eval_samples"] = max_samples
    data.update(columns)
    evaluation = dict(base.get("eval", {}))
    if metrics:
        evaluation["metrics"] = list(metrics)
    training = {k: v for k, v in base.get("training", {}).items() if k in ("seed", "per_device_eval_batch_size", "use_cpu", "bf16", "fp16", "dataloader_num_workers")}
    if batch_size:
        training["per_device_eval_batch_size"] = batch_size
    training.update(report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=False)  # a progress bar
    cfg = {"task": task, "model": model, "data": {k: v for k, v in data.items() if v is not None},
           "method": {"name": "full"}, "training": training, "eval": evaluation}
    if base.get("description"):
        cfg["description"] = base["description"]
    return build_config(cfg, source="evaluation settings")


def model_labels(model_path: str) -> tuple[Optional[list[str]], int]:
    """(label names in id order, num_labels) of a classifier; names None when they are LABEL_0.. defaults."""
    from transformers import AutoConfig

    from .modeling import describe_load_error

    path = Path(model_path)
    source = model_path
    if path.is_dir() and not (path / "config.json").is_file() and (path / "adapter_config.json").is_file():
        source = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise describe_load_error(source, exc) from None
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    n = getattr(config, "num_labels", len(id2label))
    names = [id2label[i] for i in range(len(id2label))] if id2label else None
    if names and all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        names = None
    return names, n


def align_labels(ds: Any, data_labels: list[str], model_labels: list[str]) -> Any:
    """Re-number a split's `labels` column from the data's label order to the model's, by name."""
    unknown = [l for l in data_labels if l not in model_labels]
    if unknown:
        raise DataError(f"the data has label(s) {listing(unknown)} that the model does not know (its labels: "
                        f"{listing(model_labels)}): keep only known ones with --column 'labels=[...]'")
    if list(data_labels) == list(model_labels):
        return ds
    from datasets import ClassLabel, Value

    mapping = [model_labels.index(l) for l in data_labels]
    ds = ds.cast_column("labels", Value("int64"))
    ds = ds.map(lambda batch: {"labels": [mapping[i] for i in batch["labels"]]}, batched=True, desc="Matching labels")
    return ds.cast_column("labels", ClassLabel(names=list(model_labels)))


def load_eval_model(task: Any, model_path: str) -> Any:
    """The trained model (LoRA runs: merged copy, or base + adapter) in the task's Auto class."""
    from .modeling import describe_load_error, load_trained

    auto = task.auto_class()
    if Path(model_path).is_dir():
        return load_trained(auto, Path(model_path))
    try:
        return auto.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise describe_load_error(model_path, exc) from None


# ------------------------------------------------------------------------------------------ benchmark data


def prepare_benchmark_data(bench: Any, override: Optional[str], split: Optional[str], max_samples: Optional[int], seed: int) -> str:
    """Load a benchmark's data (its Hub data set, or the local copy in `override`), give integer
    labels their names, flatten nested fields, keep `max_samples` rows (seeded) and write the result
    to the hf-tuner cache as Parquet. Returns that file: from then on it is an ordinary local source."""
    from .config import DataConfig
    from .data import fingerprint, limit_rows, load_source
    from .packaged import cache_root

    source = override or bench.dataset
    split = split or bench.split
    cfg = DataConfig(train=source, config_name=None if override else bench.config)
    try:
        ds = load_source(source, cfg, split)
    except DataError as exc:
        if override:
            raise
        raise DataError(f"{exc} (benchmark {bench.name}: point --data at a local copy of {bench.dataset} to run offline)") from None
    if bench.flatten:
        ds = ds.flatten()
        mapping = {k: v for k, v in bench.flatten.items() if k in ds.column_names}
        if mapping:
            ds = ds.rename_columns(mapping)
    ds = limit_rows(ds, max_samples, seed)
    label_col = bench.columns.get("label_column")
    if bench.label_names and label_col and label_col in ds.column_names:
        from datasets import ClassLabel, Value

        feature = ds.features[label_col]
        if isinstance(feature, Value) and feature.dtype.startswith("int"):
            ds = ds.cast_column(label_col, ClassLabel(names=list(bench.label_names)))
    folder = cache_root() / "eval-data"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{bench.name}-{fingerprint(ds._fingerprint, source, split, max_samples, seed)}.parquet"
    if not out.is_file():
        tmp = out.with_suffix(".tmp.parquet")
        ds.to_parquet(str(tmp))
        tmp.replace(out)
    return str(out)


# ------------------------------------------------------------------------------------------ evaluate


def evaluate(model: str, data: Optional[str] = None, split: Optional[str] = None, benchmark: Optional[str] = None,
             task: Optional[str] = None, columns: Optional[list[str]] = None, output: Optional[str] = None,
             batch_size: Optional[int] = None, max_samples: Optional[int] = None,
             on_status: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate MODEL and return the result (also written as JSON; merged into a run's metrics.json
    and model card). See the module docstring."""
    from .benchmarks import get_benchmark
    from .run import _quiet_libraries
    from .tasks import get_task

    if batch_size is not None and batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if max_samples is not None and max_samples < 1:
        raise ConfigError("--max-samples must be at least 1")
    bench = get_benchmark(benchmark) if benchmark else None
    ref = resolve_model_ref(model)
    task_name = _task_name(ref, task, bench)
    task_cls = get_task(task_name)
    cols = parse_columns(columns or [])
    if bench is not None:
        cols = {**bench.columns, **cols}
    run_split = None
    if bench is None and data is None:
        if ref.run_cfg is None:
            raise ConfigError("nothing to evaluate on: give --data PATH_OR_HUB_ID or --benchmark NAME (or a run folder)")
        run_split = split or "validation"
        if run_split not in ("validation", "test"):
            raise ConfigError(f"--split {run_split}: without --data a run is evaluated on its own 'validation' or 'test' split")

    _quiet_libraries()
    classifier = task_cls.classifier
    names, num_labels = model_labels(ref.path) if classifier else (None, 0)
    seed = ref.run_cfg.training.seed if ref.run_cfg is not None else 42
    on_status(f"Loading {'benchmark ' + bench.name if bench else data or ('the run data [' + run_split + ']')} ...")
    source = prepare_benchmark_data(bench, data, split, max_samples, seed) if bench else data
    cfg = eval_config(ref, task_name, source, split if not bench else None, cols, batch_size, max_samples,
                      list(bench.eval_metrics) if bench and bench.eval_metrics else None)
    t = task_cls(cfg)
    splits = t.load_data()
    splits = _only_split(splits, run_split or "validation")
    if classifier and "labels" in t.info:
        if names:
            splits.train = splits.validation = align_labels(splits.validation, t.info["labels"], names)
            t.info["labels"] = names
        elif len(t.info["labels"]) != num_labels:
            raise DataError(f"the data has {len(t.info['labels'])} labels ({listing(t.info['labels'])}) but the model has {num_labels} outputs")
    processing = t.load_processing(splits)
    on_status(f"Loading the model from {ref.path} ...")
    trained = t.after_model_load(load_eval_model(t, ref.path), processing)  # the task's fix-ups (pad ids, channels)
    features = t.preprocess(splits, processing)
    started = time.time()
    on_status(f"Evaluating on {len(features.validation)} rows ...")
    with tempfile.TemporaryDirectory(prefix="hf-tuner-eval-") as tmp:
        trainer = _trainer(t, cfg, trained, processing, features, Path(tmp))
        result = _run_metrics(trainer, t, features)
    name = bench.name if bench else data_name(data, split or run_split)
    result.update({
        "name": name,
        "model": ref.path,
        "task": task_name,
        "benchmark": bench.name if bench else None,
        "data": bench.dataset if bench else data or ref.run_cfg.data.train,  # a benchmark's --data is a copy of it
        "config": bench.config if bench else cfg.data.config_name,
        "split": (split or bench.split) if bench else (split or run_split),
        "rows": len(features.validation),
        "runtime_s": round(time.time() - started, 2),
    })
    if run_split:
        result["source"] = splits.sources.get("validation")
    if bench and data:
        result["local_copy"] = data
    if splits.notes:
        result["notes"] = splits.notes
    _save(result, ref, output)
    return result


def _task_name(ref: ModelRef, task: Optional[str], bench: Any) -> str:
    if ref.run_cfg is not None:
        if task and task != ref.run_cfg.task:
            raise ConfigError(f"--task {task} contradicts the run, which is a {ref.run_cfg.task} run: drop --task")
        name = ref.run_cfg.task
    else:
        name = task or (bench.task if bench else None)
        if not name:
            raise ConfigError(f"{ref.path} is not a run folder: say what it is with --task (text-classification, causal-lm, seq2seq, image-classification)")
    if bench is not None and bench.task != name:
        raise ConfigError(f"benchmark '{bench.name}' is for {bench.task} models but this is a {name} model")
    return name


def _only_split(splits: Any, which: str) -> Any:
    """Splits whose train and validation are both the one split to evaluate (tokenised once)."""
    from .data import Splits

    ds = getattr(splits, which)
    if ds is None:
        raise ConfigError(f"the run has no {which} split (its recipe sets no data.test / data.test_size)")
    sources = {"train": splits.sources.get(which, which), "validation": splits.sources.get(which, which)}
    return Splits(ds, ds, None, sources, list(splits.notes))


def _trainer(task: Any, cfg: Any, model: Any, processing: Any, features: Any, tmp: Path) -> Any:
    from .run import build_trainer, training_arguments

    return build_trainer(task, training_arguments(cfg, task, tmp), model, processing, None, features.validation)


def _run_metrics(trainer: Any, task: Any, features: Any) -> dict[str, Any]:
    """Metrics through the task's Trainer; classifiers also get a per-class report and confusion matrix."""
    import numpy as np

    from .metrics import confusion_matrix, per_class_report
    from .run import strip_metrics

    out: dict[str, Any] = {}
    labels = task.info.get("labels")
    if labels and task.classifier:
        pred = trainer.predict(features.validation, metric_key_prefix="eval")
        metrics = strip_metrics(pred.metrics, "eval")
        predictions = np.asarray(pred.predictions).reshape(-1)
        references = np.asarray(pred.label_ids).reshape(-1)
        out["labels"] = list(labels)
        out["per_class"] = per_class_report(predictions, references, list(labels))
        out["confusion_matrix"] = confusion_matrix(predictions, references, len(labels))
    else:
        metrics = strip_metrics(trainer.evaluate(eval_dataset=features.validation, metric_key_prefix="eval"), "eval")
    metrics.update(task.extra_metrics(trainer, features, "validation"))  # causal-lm's Trainer adds perplexity itself
    out["metrics"] = {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
    return out


# ------------------------------------------------------------------------------------------ outputs


def _save(result: dict[str, Any], ref: ModelRef, output: Optional[str]) -> None:
    """JSON (+ confusion PNG) to --output or <run>/eval/<name>.json; a run also gets metrics.json
    and its model card updated."""
    path = Path(output) if output else (ref.run_dir / "eval" / f"{result['name']}.json" if ref.run_dir else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if "confusion_matrix" in result:
            png = path.with_suffix(".confusion.png")
            plot_confusion_matrix(result["confusion_matrix"], result["labels"], png, title=result["name"])
            result["confusion_matrix_png"] = str(png)
        path.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        result["output"] = str(path)
    if ref.run_dir is not None:
        record_in_run(ref, result)


def record_in_run(ref: ModelRef, result: dict[str, Any]) -> None:
    """Merge one evaluation into the run's metrics.json ("eval" section, keyed by name) and re-write
    the model card so it shows it."""
    from .hub import write_model_card
    from .run import METRICS, _write_json

    path = ref.run_dir / METRICS
    data = json.loads(path.read_text()) if path.is_file() else {}
    entry = {k: result[k] for k in ("metrics", "benchmark", "data", "config", "split", "rows", "task") if result.get(k) is not None}
    entry["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data.setdefault("eval", {})[result["name"]] = entry
    _write_json(path, data)
    write_model_card(ref.run_dir, ref.run_cfg, ref.summary or {})


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str = "") -> Path:
    """A labelled heat map of a confusion matrix (rows: true label, columns: predicted label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix)
    size = max(4.0, 0.5 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    threshold = m.max() / 2 if m.size else 0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ LM harness


def run_harness(model: str, tasks: str, include_path: Optional[str] = None, batch_size: Optional[int] = None,
                max_samples: Optional[int] = None, output: Optional[str] = None, task: Optional[str] = None,
                on_status: Callable[[str], None] = print) -> dict[str, Any]:
    """Run EleutherAI's lm-evaluation-harness (the optional `harness` extra) on a causal LM and fold
    its results into the run's metrics.json / model card, one entry per harness task."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ConfigError("--harness needs lm-evaluation-harness: pip install 'hf-tuner[harness]' (or pip install lm-eval)") from None
    ref = resolve_model_ref(model)
    task_name = _task_name(ref, task or ("causal-lm" if ref.run_cfg is None else None), None)
    if task_name != "causal-lm":
        raise ConfigError(f"--harness evaluates causal language models; this is a {task_name} model")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise ConfigError("--harness needs task names, e.g. --harness hellaswag,arc_easy")
    from .run import _quiet_libraries

    _quiet_libraries()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if include_path and not Path(include_path).exists():
        raise ConfigError(f"--harness-include {include_path} not found (a folder or file of lm-eval task YAMLs)")
    manager = TaskManager(include_path=str(Path(include_path).resolve()) if include_path else None)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        from .errors import did_you_mean

        raise ConfigError(f"unknown lm-eval task '{unknown[0]}'{did_you_mean(unknown[0], manager.all_tasks)} "
                          "(add local task YAMLs with --harness-include DIR)")
    model_args = _harness_model_args(ref.path)
    on_status(f"Running lm-eval {', '.join(names)} on {ref.path} ...")
    started = time.time()
    raw = simple_evaluate(model="hf", model_args=model_args, tasks=names, batch_size=batch_size or 8,
                          limit=max_samples, task_manager=manager, device=_device(), log_samples=False)
    if raw is None:
        raise ConfigError("lm-eval returned no results")
    results: dict[str, Any] = {"model": ref.path, "task": "causal-lm", "harness": {}, "runtime_s": round(time.time() - started, 2)}
    for name, values in raw["results"].items():
        metrics = {}
        for key, value in values.items():
            if key in ("alias", "sample_len") or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metrics[key.split(",")[0]] = round(float(value), 6)
        n = raw.get("n-samples", {}).get(name, {}).get("effective")
        results["harness"][name] = {"metrics": metrics, "rows": n}
    path = Path(output) if output else (ref.run_dir / "eval" / f"harness-{'+'.join(names)}.json" if ref.run_dir else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        results["output"] = str(path)
    if ref.run_dir is not None:
        for name, entry in results["harness"].items():
            record_in_run(ref, {"name": f"lm-eval-{name}", "metrics": entry["metrics"], "benchmark": f"lm-eval:{name}",
                                "data": f"lm-eval:{name}", "rows": entry["rows"], "task": "causal-lm"})
    return results


def _harness_model_args(path: str) -> dict[str, Any]:
    """lm-eval `hf` model arguments: the (merged) model, or base + LoRA adapter when only that exists."""
    folder = Path(path)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        adapter = folder / "adapter" if (folder / "adapter").is_dir() else folder
        if (adapter / "adapter_config.json").is_file():
            base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
            return {"pretrained": base, "peft": str(adapter), "tokenizer": str(folder)}
    return {"pretrained": path}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
