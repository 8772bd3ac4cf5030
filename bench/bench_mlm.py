"""hf-tuner's `mlm-tweets` vs. the same job written by hand as `run_mlm.py` sets it up, side by side.

Variants (each in its own child process; run interleaved, `--repeats` times):
  hf-tuner            `hf_tuner.run.train` on the mlm-tweets recipe (the LM head runs on the masked
                      positions only during training: the default)
  hf-tuner-full-head  the same with the head on every position (as `*ForMaskedLM.forward` does)
  trainer-run-mlm     a hand-written Trainer as run_mlm.py does it: documents tokenised with their
                      special tokens, concatenated and cut into blocks of 128 (`group_texts`, the
                      remainder dropped), DataCollatorForLanguageModeling(mlm_probability=0.15)

All use the same documents (the hand-written script takes hf-tuner's split of packaged:tweets-mlm),
model, seed and hyperparameters. Throughput is the Trainer's train_samples_per_second, which counts
blocks of 128 tokens (hf-tuner keeps one short remainder block more than run_mlm.py: a difference of
one block in ~900). Perplexity is measured for all three on hf-tuner's validation blocks with their
fixed masks, so every model is scored on the very same masked tokens.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_mlm.py [--repeats 2]
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

VARIANTS = ("hf-tuner", "hf-tuner-full-head", "trainer-run-mlm")


def recipe_config(args):
    from hf_tuner.recipes import load_config

    return load_config("mlm-tweets", [f"training.num_train_epochs={args.epochs}", "eval.before_training=false",
                                      "training.eval_strategy=no"])


def run_hf_tuner(args, full_head: bool) -> dict:
    from hf_tuner.run import train

    if full_head:
        import hf_tuner.tasks.masked_lm as masked_lm

        masked_lm.output_head = lambda model: None  # the trainer then takes the model's own forward and loss
    out = Path(tempfile.mkdtemp()) / "run"
    summary = train(recipe_config(args), "mlm-tweets", str(out), argv=["bench"], on_status=lambda m: None)
    return {"samples_per_second": summary.train["samples_per_second"], "perplexity": summary.metrics["perplexity"],
            "train_runtime_s": summary.train["runtime_s"]}


def run_by_hand(args) -> dict:
    """run_mlm.py's recipe, written with transformers alone (the evaluation blocks excepted, see above)."""
    from itertools import chain

    from transformers import (AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments, set_seed)

    from hf_tuner.metrics import perplexity
    from hf_tuner.packaged import resolve_model
    from hf_tuner.tasks import get_task

    cfg = recipe_config(args)
    job = get_task(cfg.task).bind(cfg)
    splits = job.data.load(job)  # the same documents as hf-tuner (its seeded split)
    set_seed(cfg.training.seed)
    source = resolve_model(cfg.model.name_or_path)
    tok = AutoTokenizer.from_pretrained(source)
    block = cfg.data.max_length
    column = cfg.data.text_column

    def tokenize(batch):
        return tok([t for t in batch[column] if t and str(t).strip()], return_special_tokens_mask=True)

    def group_texts(examples):  # run_mlm.py's group_texts
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total = (len(concatenated[list(examples.keys())[0]]) // block) * block
        return {k: [t[i: i + block] for i in range(0, total, block)] for k, t in concatenated.items()}

    train = splits.train.map(tokenize, batched=True, remove_columns=splits.train.column_names)
    train = train.map(group_texts, batched=True)
    model = AutoModelForMaskedLM.from_pretrained(source)
    t = cfg.training
    targs = TrainingArguments(output_dir=tempfile.mkdtemp(), learning_rate=t.learning_rate, num_train_epochs=t.num_train_epochs,
                              per_device_train_batch_size=t.per_device_train_batch_size,
                              per_device_eval_batch_size=t.per_device_eval_batch_size, warmup_steps=t.warmup_steps,
                              weight_decay=t.weight_decay, save_strategy="no", logging_steps=t.logging_steps,
                              seed=t.seed, report_to="none", disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train, processing_class=tok,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=cfg.data.mlm_probability))
    result = trainer.train().metrics
    # scored on hf-tuner's validation blocks, masked once with the recipe's seed (only padded here)
    features = job.data.preprocess(job, splits, tok)
    trainer.data_collator = job.data.collator(job, tok)
    loss = trainer.evaluate(features.validation)["eval_loss"]
    return {"samples_per_second": result["train_samples_per_second"], "perplexity": perplexity(loss),
            "train_runtime_s": result["train_runtime"]}


def child(args) -> None:
    if args.variant.startswith("hf-tuner"):
        result = run_hf_tuner(args, full_head=args.variant == "hf-tuner-full-head")
    else:
        result = run_by_hand(args)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--output", default="bench/results/mlm.json")
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
            print(f"repeat {r + 1} {variant:18s} {results[variant][-1]}", flush=True)
    med = {v: {k: statistics.median(x[k] for x in results[v]) for k in results[v][0]} for v in VARIANTS}
    base = med["trainer-run-mlm"]
    report = {"settings": {"epochs": args.epochs, "repeats": args.repeats, "cpu_count": os.cpu_count()}, "median": med,
              "ratio_vs_run_mlm": med["hf-tuner"]["samples_per_second"] / base["samples_per_second"],
              "ratio_full_head_vs_run_mlm": med["hf-tuner-full-head"]["samples_per_second"] / base["samples_per_second"],
              "perplexity_ratio_vs_run_mlm": med["hf-tuner"]["perplexity"] / base["perplexity"], "runs": results}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"\n{'variant':18s} {'samples/s':>10s} {'perplexity':>11s}")
    for v in VARIANTS:
        print(f"{v:18s} {med[v]['samples_per_second']:10.2f} {med[v]['perplexity']:11.2f}")
    print(f"hf-tuner / trainer-run-mlm samples/s: {report['ratio_vs_run_mlm']:.3f} "
          f"(perplexity x{report['perplexity_ratio_vs_run_mlm']:.3f})")
    print(f"hf-tuner-full-head / trainer-run-mlm samples/s: {report['ratio_full_head_vs_run_mlm']:.3f}")


if __name__ == "__main__":
    main()
