"""hf-tuner's `ner-tweets` vs. the same job written by hand as `run_ner.py` sets it up, side by side.

Variants (each in its own child process; run interleaved, `--repeats` times):
  hf-tuner         `hf_tuner.run.train` on the ner-tweets recipe (length-grouped batches: the default)
  hf-tuner-random  the same with training.train_sampling_strategy=random
  trainer-dynamic  a hand-written Trainer as run_ner.py does it: first-sub-word labels,
                   DataCollatorForTokenClassification (dynamic padding), random batches, seqeval F1

All use the same rows (the hand-written script takes hf-tuner's split of the WNUT-16 tweets, so the
comparison is not about the split), model, seed and hyperparameters. Throughput is the Trainer's
train_samples_per_second; F1 is entity-level (seqeval) on the validation split.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_ner.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = ("hf-tuner", "hf-tuner-random", "trainer-dynamic")


def recipe_config(args, *extra: str):
    from hf_tuner.recipes import load_config

    return load_config("ner-tweets", [f"training.num_train_epochs={args.epochs}", "eval.before_training=false",
                                      "training.eval_strategy=no", *extra])


def run_hf_tuner(args, sampling: str) -> dict:
    from hf_tuner.run import train

    extra = [] if sampling == "group_by_length" else [f"training.train_sampling_strategy={sampling}"]
    out = Path(tempfile.mkdtemp()) / "run"
    summary = train(recipe_config(args, *extra), "ner-tweets", str(out), argv=["bench"], on_status=lambda m: None)
    if summary.train_sampling_strategy != sampling:
        raise SystemExit(f"hf-tuner trained with {summary.train_sampling_strategy}, not {sampling}")
    return {"samples_per_second": summary.train["samples_per_second"], "f1": summary.metrics["f1"],
            "train_runtime_s": summary.train["runtime_s"]}


def run_by_hand(args) -> dict:
    """run_ner.py's recipe, written with transformers alone."""
    import numpy as np
    from seqeval.metrics import f1_score
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments, set_seed)

    from hf_tuner.packaged import resolve_model
    from hf_tuner.tasks import get_task

    cfg = recipe_config(args)
    job = get_task(cfg.task).bind(cfg)
    splits = job.data.load(job)  # the same rows as hf-tuner (its seeded split)
    names = list(job.labels)
    set_seed(cfg.training.seed)
    tok = AutoTokenizer.from_pretrained(resolve_model(cfg.model.name_or_path))

    def tokenize(batch):
        enc = tok(batch["tokens"], is_split_into_words=True, truncation=True, max_length=cfg.data.max_length)
        labels = []
        for i, tags in enumerate(batch["tag_ids"]):
            previous, row = None, []
            for word in enc.word_ids(i):
                row.append(-100 if word is None or word == previous else tags[word])
                previous = word
            labels.append(row)
        enc["labels"] = labels
        return enc

    train = splits.train.map(tokenize, batched=True, remove_columns=splits.train.column_names)
    val = splits.validation.map(tokenize, batched=True, remove_columns=splits.validation.column_names)
    model = AutoModelForTokenClassification.from_pretrained(
        resolve_model(cfg.model.name_or_path), num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)})
    t = cfg.training
    targs = TrainingArguments(output_dir=tempfile.mkdtemp(), learning_rate=t.learning_rate, num_train_epochs=t.num_train_epochs,
                              per_device_train_batch_size=t.per_device_train_batch_size,
                              per_device_eval_batch_size=t.per_device_eval_batch_size, save_strategy="no",
                              logging_steps=t.logging_steps, seed=t.seed, report_to="none", disable_tqdm=True)

    def metrics(p):
        preds = np.argmax(p.predictions, -1)
        pairs = [[(names[a], names[b]) for a, b in zip(pr, lr) if b != -100] for pr, lr in zip(preds, p.label_ids)]
        return {"f1": f1_score([[r for _, r in row] for row in pairs], [[a for a, _ in row] for row in pairs])}

    trainer = Trainer(model=model, args=targs, train_dataset=train, eval_dataset=val, processing_class=tok,
                      data_collator=DataCollatorForTokenClassification(tok), compute_metrics=metrics)
    result = trainer.train().metrics
    return {"samples_per_second": result["train_samples_per_second"], "f1": trainer.evaluate()["eval_f1"],
            "train_runtime_s": result["train_runtime"]}


def child(args) -> None:
    if args.variant.startswith("hf-tuner"):
        result = run_hf_tuner(args, "random" if args.variant == "hf-tuner-random" else "group_by_length")
    else:
        result = run_by_hand(args)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--output", default="bench/results/ner.json")
    args = parser.parse_args()
    if args.variant:
        return child(args)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--variant", variant, "--epochs", str(args.epochs)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            results[variant].append(json.loads(line[len("RESULT "):]))
            print(f"repeat {r + 1} {variant:16s} {results[variant][-1]}", flush=True)
    med = {v: {k: statistics.median(x[k] for x in results[v]) for k in results[v][0]} for v in VARIANTS}
    base = med["trainer-dynamic"]
    report = {"settings": {"epochs": args.epochs, "repeats": args.repeats, "cpu_count": os.cpu_count()}, "median": med,
              "ratio_vs_trainer_dynamic": med["hf-tuner"]["samples_per_second"] / base["samples_per_second"],
              "ratio_random_vs_trainer_dynamic": med["hf-tuner-random"]["samples_per_second"] / base["samples_per_second"],
              "f1_vs_trainer_dynamic": med["hf-tuner"]["f1"] - base["f1"], "runs": results}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"\n{'variant':16s} {'samples/s':>10s} {'f1':>7s}")
    for v in VARIANTS:
        print(f"{v:16s} {med[v]['samples_per_second']:10.2f} {med[v]['f1']:7.3f}")
    print(f"hf-tuner / trainer-dynamic samples/s: {report['ratio_vs_trainer_dynamic']:.3f} (F1 {report['f1_vs_trainer_dynamic']:+.3f})")
    print(f"hf-tuner-random / trainer-dynamic samples/s: {report['ratio_random_vs_trainer_dynamic']:.3f}")


if __name__ == "__main__":
    main()
