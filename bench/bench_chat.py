"""Conversational SFT, side by side: hf-tuner's `causal-lm` on a `messages` column against TRL's
SFTTrainer (what `trl sft` runs), both with the loss on the assistant's turns only and packing on.

Same for both: the first --rows conversations of packaged:tweet-chats (system / user / assistant
turns) after one seeded shuffle, written to one JSONL file; --eval-rows further conversations as the
held-out set; one GPT-2 (2 layers x 128, random init saved once) with a byte-level BPE tokenizer
trained on the turns' contents and the ChatML template of `hf_tuner.modeling.CHATML` (its
{% generation %} markers give TRL its assistant mask); max_length, batch size, learning rate, 1 epoch,
fp32, no gradient checkpointing (SFTConfig's default is on: off here, as in hf-tuner), no evaluation
or checkpoints during training, the same threads. Reported: training time (the Trainer's
train_runtime), optimizer steps, and the held-out loss over assistant tokens, each side's evaluation
of the other side's held-out conversations being the same set, unpacked (TRL: eval_packing=False).

TRL packs with its default "bfd" strategy (padding-free: a batch is one row of whole conversations,
its position ids restarting per conversation); hf-tuner cuts packed blocks of max_length tokens whose
position ids restart at every conversation.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_chat.py [--rows 3000]
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

VARIANTS = ("hf-tuner", "trl-sft")


def prepare(work: Path, args: argparse.Namespace) -> None:
    """The shared data files and model folder both sides start from."""
    import random

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hf_tuner.modeling import set_chat_template, train_tokenizer
    from hf_tuner.packaged import resolve_dataset

    rows = [json.loads(line) for line in Path(resolve_dataset("packaged:tweet-chats")).read_text(encoding="utf-8").split("\n") if line.strip()]
    random.Random(0).shuffle(rows)
    train, val = rows[:args.rows], rows[args.rows:args.rows + args.eval_rows]
    for name, part in (("train", train), ("val", val)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    tok = train_tokenizer([m["content"] for r in train for m in r["messages"]], "byte-level-bpe", 2000, 2, "causal")
    set_chat_template(tok, "chatml")
    torch.manual_seed(0)
    config = AutoConfig.for_model("gpt2", n_layer=2, n_embd=128, n_head=4, n_positions=args.max_length,
                                  vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(work / "model")
    tok.save_pretrained(work / "model")


def run_hf_tuner(work: Path, args: argparse.Namespace) -> dict:
    from hf_tuner.recipes import build_config
    from hf_tuner.run import train

    cfg = build_config({
        "task": "causal-lm",
        "model": {"name_or_path": str(work / "model")},
        "data": {"train": str(work / "train.jsonl"), "validation": str(work / "val.jsonl"), "messages_column": "messages",
                 "assistant_only_loss": True, "max_length": args.max_length, "packing": True},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": args.batch_size,
                     "learning_rate": args.learning_rate, "eval_strategy": "no", "save_strategy": "no",
                     "logging_steps": 50, "seed": 0, "per_device_eval_batch_size": 32},
        "eval": {"before_training": False},
    })
    summary = train(cfg, "bench", str(work / "run"), overwrite=True, argv=["bench"], on_status=lambda m: None).model_dump()
    return {"train_runtime_s": summary["train"]["runtime_s"], "steps": summary["train"]["global_steps"],
            "train_loss": summary["train"]["train_loss"], "eval_loss": summary["metrics"]["loss"]}


def run_trl(work: Path, args: argparse.Namespace) -> dict:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(0)
    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model")
    train = load_dataset("json", data_files=str(work / "train.jsonl"), split="train")
    val = load_dataset("json", data_files=str(work / "val.jsonl"), split="train")
    config = SFTConfig(output_dir=str(work / "trl"), max_length=args.max_length, packing=True, eval_packing=False,
                       assistant_only_loss=True, num_train_epochs=1, per_device_train_batch_size=args.batch_size,
                       per_device_eval_batch_size=32, learning_rate=args.learning_rate, eval_strategy="no",
                       save_strategy="no", logging_steps=50, bf16=False, report_to="none", seed=0, disable_tqdm=True,
                       gradient_checkpointing=False)
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, eval_dataset=val, processing_class=tok)
    out = trainer.train()
    metrics = trainer.evaluate()
    return {"train_runtime_s": round(out.metrics["train_runtime"], 2), "steps": trainer.state.global_step,
            "train_loss": out.metrics["train_loss"], "eval_loss": round(metrics["eval_loss"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="training conversations (one epoch)")
    parser.add_argument("--eval-rows", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        run = run_trl if args.child == "trl-sft" else run_hf_tuner
        print("RESULT " + json.dumps(run(Path(args.work), args)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    os.environ["HF_TUNER_CACHE"] = str(work / "cache")
    prepare(work, args)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    rounds: list[dict[str, dict]] = []
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        results: dict[str, dict] = {}
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--child", variant, "--work", str(work), "--rows", str(args.rows),
                   "--eval-rows", str(args.eval_rows), "--max-length", str(args.max_length),
                   "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
                   "--threads", str(args.threads)]
            started = time.time()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            results[variant] = {**json.loads(line[len("RESULT "):]), "wall_s": round(time.time() - started, 1)}
            print(f"{variant:10} {json.dumps(results[variant])}", file=sys.stderr)
        rounds.append(results)

    print(f"\n{args.rows} conversations (packaged:tweet-chats), GPT-2 2x128 (random init), ChatML, assistant-only loss, "
          f"packed, max_length {args.max_length}, batch {args.batch_size}, 1 epoch, fp32, {args.threads} thread(s); "
          f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}\n")
    print("| round | variant | steps | train s | held-out loss (assistant tokens) |")
    print("|---|---|---|---|---|")
    for i, results in enumerate(rounds, 1):
        for name, r in results.items():
            print(f"| {i} | {name} | {r['steps']} | {r['train_runtime_s']} | {r['eval_loss']} |")
    for i, results in enumerate(rounds, 1):
        ours, theirs = results["hf-tuner"], results["trl-sft"]
        print(f"round {i}: hf-tuner / trl sft train time {theirs['train_runtime_s'] / ours['train_runtime_s']:.2f}x, "
              f"held-out loss {ours['eval_loss']:.4f} vs {theirs['eval_loss']:.4f} "
              f"({100 * (ours['eval_loss'] / theirs['eval_loss'] - 1):+.1f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
