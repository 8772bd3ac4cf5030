"""hf-tuner's `ner-tweets` vs. the same job written by hand as `run_ner.py` sets it up, side by side.

Variants (each in its own child process; run interleaved, `--repeats` times):
  hf-tuner         `hf_tuner.run.train` on the ner-tweets recipe with length-grouped batches (the default until
                   issue 31 showed they cost F1; the task now trains in random order unless told)
  hf-tuner-random  the same with training.train_sampling_strategy=random
  trainer-dynamic  a hand-written Trainer as run_ner.py does it: first-sub-word labels,
                   DataCollatorForTokenClassification (dynamic padding), random batches, seqeval F1

All use the same rows (the hand-written script takes hf-tuner's split of the WNUT-16 tweets, so the
comparison is not about the split), model, seed and hyperparameters, in interleaved rounds
(`_common.run_rounds`: alternating order; CPU seconds per step from the timing hook, which hardly
move when other work shares the machine). Throughput is the Trainer's
train_samples_per_second; F1 is entity-level (seqeval) on the validation split.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_ner.py [--repeats 3] [--quiet-wait 0]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import add_round_options, compare, medians_of, run_rounds, write_json

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("hf-tuner", "hf-tuner-random", "trainer-dynamic")


def recipe_config(args, *extra: str):
    from hf_tuner.recipes import load_config

    return load_config("ner-tweets", [f"training.num_train_epochs={args.epochs}", "eval.before_training=false",
                                      "training.eval_strategy=no", *extra])


def run_hf_tuner(args, sampling: str) -> dict:
    from hf_tuner.run import train

    extra = [f"training.train_sampling_strategy={sampling}"]  # explicit: the task's default is random order
    out = Path(tempfile.mkdtemp()) / "run"
    summary = train(recipe_config(args, *extra), "ner-tweets", str(out), argv=["bench"], on_status=lambda m: None)
    if summary.train_sampling_strategy != sampling:
        raise SystemExit(f"hf-tuner trained with {summary.train_sampling_strategy}, not {sampling}")
    return {"samples_per_second": summary.train["samples_per_second"], "f1": summary.metrics["f1"],
            "train_runtime_s": summary.train["runtime_s"], "steps": summary.train["global_steps"]}


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
            "train_runtime_s": result["train_runtime"], "steps": trainer.state.global_step}


def child(variant: str, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if variant.startswith("hf-tuner"):
        return run_hf_tuner(args, "random" if variant == "hf-tuner-random" else "group_by_length")
    return run_by_hand(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=2)
    add_round_options(parser, VARIANTS, ROOT / "bench" / "results" / "ner.json")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-ner-"))

    def child_command(variant: str, repeat: int) -> list[str]:
        return [sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs), "--threads", str(args.threads)]

    runs, load_before, load_after = run_rounds(work, args, args.variants.split(","), child_command, 16)
    medians = medians_of(runs)
    print(f"\nner-tweets, MiniLM-L6, {args.epochs:g} epochs, fp32, {args.threads} thread(s), medians of {args.repeats}; "
          f"load average {load_before:.1f} -> {load_after:.1f}\n")
    print("| variant | steps | samples/s | CPU s/step | entity F1 |")
    print("|---|---|---|---|---|")
    for v, m in medians.items():
        print(f"| {v} | {m['steps']:.0f} | {m['samples_per_second']:.2f} | {m['cpu_s_per_step']:.3f} | {m['f1']:.3f} |")
    ratio, cpu_ratio, per_round, per_round_cpu = compare(runs, medians, "hf-tuner", "trainer-dynamic", "samples_per_second")
    if ratio is not None:
        print(f"\nhf-tuner / run_ner.py set-up: {ratio:.2f}x samples/s (rounds {per_round}), "
              f"{cpu_ratio:.2f}x less CPU per step (rounds {per_round_cpu}); "
              f"F1 {medians['hf-tuner']['f1'] - medians['trainer-dynamic']['f1']:+.3f}")
    write_json(args.json, args, {"recipe": "ner-tweets", "epochs": args.epochs}, runs, medians, ratio, cpu_ratio,
               load_before, load_after)


if __name__ == "__main__":
    main()
