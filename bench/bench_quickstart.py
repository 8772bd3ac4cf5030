"""hf-tuner vs. the same job written by hand with transformers.Trainer, side by side.

Variants (each in its own child process, so peak RSS is its own; run interleaved, `--repeats` times):
  hf-tuner        `hf_tuner.run.train` on the quickstart recipe (length-grouped batches: the text tasks' default)
  hf-tuner-random the same with training.train_sampling_strategy=random (hf-tuner before that default)
  trainer-dynamic a hand-written Trainer script: DataCollatorWithPadding (dynamic padding), random batches
  trainer-static  the same, padded to max_length=128 (the old run_glue.py default)

All three use the same rows (checked: the script fails if the hand-written split differs from
hf-tuner's), model, seed and hyperparameters. Throughput is the Trainer's train_samples_per_second.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_quickstart.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = ("hf-tuner", "hf-tuner-random", "trainer-dynamic", "trainer-static")


def recipe_config(args, *extra: str):
    from hf_tuner.recipes import load_config

    overrides = [f"data.max_train_samples={args.rows}", f"training.num_train_epochs={args.epochs}",
                 "eval.before_training=false", *extra]
    return load_config("quickstart", overrides)


def run_hf_tuner(args, sampling: str) -> dict:
    from hf_tuner.run import train

    extra = [] if sampling == "group_by_length" else [f"training.train_sampling_strategy={sampling}"]
    cfg = recipe_config(args, *extra)
    out = Path(tempfile.mkdtemp()) / "run"
    summary = train(cfg, "quickstart", str(out), argv=["bench"], on_status=lambda m: None).model_dump()
    if summary["train_sampling_strategy"] != sampling:  # the comparison would measure something else
        raise SystemExit(f"hf-tuner trained with {summary['train_sampling_strategy']}, not {sampling}")
    return {"samples_per_second": summary["train"]["samples_per_second"], "accuracy": summary["metrics"]["accuracy"],
            "train_runtime_s": summary["train"]["runtime_s"]}


def run_by_hand(args, static: bool) -> dict:
    """What a user would write with transformers alone (the hf-tuner recipe's settings, by hand)."""
    import numpy as np
    from datasets import ClassLabel, load_dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments, set_seed)

    from hf_tuner.packaged import resolve_dataset, resolve_model
    from hf_tuner.run import learning_rate
    from hf_tuner.tasks import get_task

    cfg = recipe_config(args)
    rate = learning_rate(cfg, get_task(cfg.task).bind(cfg))[0]  # the rate hf-tuner trains with (the recipe's default)
    set_seed(cfg.training.seed)
    model_path = resolve_model(cfg.model.name_or_path)
    ds = load_dataset("parquet", data_files=resolve_dataset(cfg.data.train), split="train")
    labels = ["negative", "positive"]
    ds = ds.filter(lambda r: r["label"] in labels)
    ds = ds.map(lambda r: {"labels": labels.index(r["label"])}, remove_columns=["label"])
    ds = ds.cast_column("labels", ClassLabel(names=labels))
    parts = ds.train_test_split(test_size=cfg.data.validation_size, seed=cfg.training.seed, stratify_by_column="labels")
    train = parts["train"].shuffle(seed=cfg.training.seed).select(range(cfg.data.max_train_samples))
    val = parts["test"].shuffle(seed=cfg.training.seed).select(range(cfg.data.max_eval_samples))
    expected = _hf_tuner_rows(cfg)
    if train["text"] != expected["train"] or val["text"] != expected["validation"]:
        raise SystemExit("the hand-written split differs from hf-tuner's: the comparison would be unfair")
    tok = AutoTokenizer.from_pretrained(model_path)
    padding = "max_length" if static else False

    def tokenize(b):
        return tok(b["text"], truncation=True, max_length=cfg.data.max_length, padding=padding)

    train = train.map(tokenize, batched=True, remove_columns=["text", "confidence"])
    val = val.map(tokenize, batched=True, remove_columns=["text", "confidence"])
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=2, id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    t = cfg.training
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(), learning_rate=rate, num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=t.per_device_train_batch_size, per_device_eval_batch_size=t.per_device_eval_batch_size,
        eval_strategy="epoch", save_strategy="no", logging_steps=t.logging_steps, seed=t.seed, report_to="none",
        disable_tqdm=True,
    )

    def metrics(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    trainer = Trainer(model=model, args=targs, train_dataset=train, eval_dataset=val, processing_class=tok,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=metrics)
    result = trainer.train().metrics
    return {"samples_per_second": result["train_samples_per_second"], "accuracy": trainer.evaluate()["eval_accuracy"],
            "train_runtime_s": result["train_runtime"]}


def _hf_tuner_rows(cfg) -> dict:
    from hf_tuner.tasks import get_task

    job = get_task(cfg.task).bind(cfg)
    splits = job.data.load(job)
    return {"train": splits.train["text"], "validation": splits.validation["text"]}


def child(args) -> None:
    if args.variant.startswith("hf-tuner"):
        result = run_hf_tuner(args, "random" if args.variant == "hf-tuner-random" else "group_by_length")
    else:
        result = run_by_hand(args, static=args.variant == "trainer-static")
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--output", default="bench/results/quickstart.json")
    args = parser.parse_args()
    if args.variant:
        return child(args)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--variant", variant, "--rows", str(args.rows), "--epochs", str(args.epochs)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            results[variant].append(json.loads(line[len("RESULT "):]))
            print(f"repeat {r + 1} {variant:16s} {results[variant][-1]}", flush=True)
    med = {v: {k: statistics.median(x[k] for x in results[v]) for k in results[v][0]} for v in VARIANTS}
    report = {
        "settings": {"rows": args.rows, "epochs": args.epochs, "repeats": args.repeats, "cpu_count": os.cpu_count()},
        "median": med,
        "ratio_vs_trainer_dynamic": med["hf-tuner"]["samples_per_second"] / med["trainer-dynamic"]["samples_per_second"],
        "ratio_random_vs_trainer_dynamic": med["hf-tuner-random"]["samples_per_second"] / med["trainer-dynamic"]["samples_per_second"],
        "accuracy_vs_trainer_dynamic": med["hf-tuner"]["accuracy"] - med["trainer-dynamic"]["accuracy"],
        "ratio_vs_trainer_static": med["hf-tuner"]["samples_per_second"] / med["trainer-static"]["samples_per_second"],
        "runs": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"\n{'variant':16s} {'samples/s':>10s} {'accuracy':>9s} {'peak RSS GB':>12s}")
    for v in VARIANTS:
        print(f"{v:16s} {med[v]['samples_per_second']:10.2f} {med[v]['accuracy']:9.3f} {med[v]['peak_rss_gb']:12.2f}")
    print(f"hf-tuner / trainer-dynamic samples/s: {report['ratio_vs_trainer_dynamic']:.3f}"
          f" (accuracy {report['accuracy_vs_trainer_dynamic']:+.3f})")
    print(f"hf-tuner-random / trainer-dynamic samples/s: {report['ratio_random_vs_trainer_dynamic']:.3f}")
    print(f"hf-tuner / trainer-static  samples/s: {report['ratio_vs_trainer_static']:.3f}")


if __name__ == "__main__":
    main()
