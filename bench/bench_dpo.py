"""DPO training throughput, side by side: hf-tuner's `dpo` task and TRL's own `trl dpo` CLI on the
same policy, pairs and settings.

Variants (each in its own child process, the same explicit thread count, run interleaved):
  hf-tuner         `hf_tuner.run.train` on the bundled `gpt2-tweets-dpo` recipe (length-grouped pairs,
                   the default), its policy and data pointed at the bench's folder and files
  hf-tuner-random  the same with `training.train_sampling_strategy=random` (pairs in random order, as TRL)
  trl-dpo          the real `.venv/bin/trl dpo` CLI (which relaunches itself through `accelerate launch`)

Same for all: one policy folder (`--policy DIR`, e.g. runs/gpt2-tweets, or the gpt2-tweets recipe
trained once into the bench's folder), which is also the frozen reference; the first --rows pairs of
hf-tuner's own train split of packaged:tweet-preferences (prompt, chosen, rejected) in one JSONL file
that every side reads; max_length, batch size, learning rate, beta, epochs, seed, fp32, no gradient
checkpointing, no evaluation or checkpoints during training, OMP_NUM_THREADS=--threads. The script
compares the sides' resolved DPOConfig field by field before running and stops on a difference it
does not expect. Throughput is each side's own Trainer metric (pairs/s); the timing hook of
`_common.py` adds CPU seconds per step.

After training, every side's model is scored the same way: TRL's DPOTrainer evaluation against the
starting policy on the same --eval-rows held-out pairs (reward accuracy = the share of pairs whose
chosen completion gains more log-probability over the reference than the rejected one).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_dpo.py --policy runs/gpt2-tweets [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import (add_round_options, child_flags, compare, final_metrics, medians_of, printed_dicts, print_grouping,
                     run_rounds, setting_differences, trl_bin, write_json)

VARIANTS = ("hf-tuner", "hf-tuner-random", "trl-dpo")
RECIPE = "gpt2-tweets-dpo"
ROOT = Path(__file__).resolve().parent.parent
# DPOConfig fields that may differ: paths and names; train_sampling_strategy (what the bench measures);
# disable_tqdm (hf-tuner shows a bar on a terminal only, the children have none: it changes no computation)
IGNORED = {"output_dir", "logging_dir", "run_name", "hub_token", "project", "train_sampling_strategy", "disable_tqdm"}


def hf_overrides(work: Path, args: argparse.Namespace, variant: str = "hf-tuner") -> list[str]:
    order = ["training.train_sampling_strategy=random"] if variant == "hf-tuner-random" else []
    return order + [f"model.name_or_path={work / 'policy'}", f"data.train={work / 'data' / 'train.jsonl'}",
                    f"data.validation={work / 'val.jsonl'}", f"data.max_length={args.max_length}",
                    f"training.per_device_train_batch_size={args.batch_size}", f"training.learning_rate={args.learning_rate}",
                    f"training.num_train_epochs={args.epochs}", f"training.beta={args.beta}", f"training.seed={args.seed}",
                    "training.logging_steps=10", "training.eval_strategy=no", "training.save_strategy=no",
                    "eval.before_training=false"]


def trl_args(work: Path, args: argparse.Namespace, out: Path) -> list[str]:
    return ["--model_name_or_path", str(work / "policy"), "--dataset_name", str(work / "data"),
            "--output_dir", str(out), "--max_length", str(args.max_length),
            "--per_device_train_batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate),
            "--num_train_epochs", str(args.epochs), "--beta", str(args.beta), "--seed", str(args.seed),
            "--logging_steps", "10", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
            "--bf16", "false", "--gradient_checkpointing", "false", "--use_cpu", "true",
            "--per_device_eval_batch_size", "64", "--save_total_limit", "1"]  # unused (no eval, no saves): as hf-tuner


def prepare(work: Path, args: argparse.Namespace) -> dict:
    """The policy folder, the pairs as JSONL, and both sides' settings compared."""
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train, training_arguments
    from hf_tuner.tasks import get_task
    from trl.scripts.dpo import make_parser

    if args.policy:
        shutil.copytree(args.policy, work / "policy")
    else:
        train(load_config("gpt2-tweets", [f"training.seed={args.seed}"]), "bench-policy", str(work / "policy"),
              overwrite=True, argv=["bench"], on_status=lambda m: None)
    cfg = load_config(RECIPE, [f"model.name_or_path={work / 'policy'}", f"training.seed={args.seed}"])
    job = get_task(cfg.task).bind(cfg)
    splits = job.data.load(job)
    (work / "data").mkdir()
    splits.train.select(range(min(args.rows, len(splits.train)))).to_json(
        str(work / "data" / "train.jsonl"), lines=True, force_ascii=False)
    splits.validation.select(range(min(args.eval_rows, len(splits.validation)))).to_json(
        str(work / "val.jsonl"), lines=True, force_ascii=False)

    cfg = load_config(RECIPE, hf_overrides(work, args))
    ours = training_arguments(cfg, get_task(cfg.task).bind(cfg), work / "probe").to_dict()
    _, theirs, _, _ = make_parser().parse_args_and_config(trl_args(work, args, work / "probe"))
    theirs = theirs.to_dict()
    differences = setting_differences(ours, theirs, IGNORED)
    return {"train_pairs": min(args.rows, len(splits.train)), "eval_pairs": min(args.eval_rows, len(splits.validation)),
            "setting_differences": differences}


def held_out(model_dir: Path, work: Path, args: argparse.Namespace) -> dict:
    """Every side's model scored alike: TRL's DPO evaluation against the starting policy."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(work / "policy")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    reference = AutoModelForCausalLM.from_pretrained(work / "policy").eval()
    val = load_dataset("json", data_files=str(work / "val.jsonl"), split="train")
    args = DPOConfig(output_dir=str(work / "eval-probe"), per_device_eval_batch_size=64, report_to="none", bf16=False,
                     use_cpu=True, max_length=args.max_length, beta=args.beta)
    trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=val, eval_dataset=val,
                         processing_class=tokenizer)
    m = trainer.evaluate()
    return {"eval_reward_accuracy": round(m["eval_rewards/accuracies"], 4), "eval_loss": round(m["eval_loss"], 4)}


def run_hf_tuner(work: Path, args: argparse.Namespace, run: str, variant: str) -> dict:
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train

    out = work / f"{variant}-{run}"
    summary = train(load_config(RECIPE, hf_overrides(work, args, variant)), "bench-dpo", str(out), overwrite=True,
                    argv=["bench"], on_status=lambda m: None).model_dump()
    t = summary["train"]
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return {"samples_per_second": t["samples_per_second"], "steps_per_second": t["steps_per_second"],
            "train_runtime_s": t["runtime_s"], "steps": t["global_steps"], "train_loss": round(t["train_loss"], 4),
            **held_out(out, work, args), "peak_rss_gb": peak}


def run_trl(work: Path, args: argparse.Namespace, run: str) -> dict:
    out = work / f"trl-{run}"
    proc = subprocess.run([trl_bin(), "dpo", *trl_args(work, args, out)], capture_output=True, text=True,
                          cwd=work, env=os.environ)
    if proc.returncode != 0:
        raise RuntimeError(f"trl dpo failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    m = final_metrics(printed_dicts(proc.stdout + "\n" + proc.stderr))
    peak = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)
    return {"samples_per_second": m["train_samples_per_second"], "steps_per_second": m["train_steps_per_second"],
            "train_runtime_s": round(m["train_runtime"], 2), "steps": round(m["train_steps_per_second"] * m["train_runtime"]),
            "train_loss": round(m["train_loss"], 4), **held_out(out, work, args), "peak_rss_gb": peak}


def child(variant: str, work: Path, args: argparse.Namespace, run: str) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    return run_trl(work, args, run) if variant == "trl-dpo" else run_hf_tuner(work, args, run, variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", help="the policy folder (e.g. runs/gpt2-tweets); else gpt2-tweets is trained first")
    parser.add_argument("--rows", type=int, default=1000, help="training pairs (one epoch: rows / batch steps)")
    parser.add_argument("--eval-rows", type=int, default=256, help="held-out pairs scored after training")
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    add_round_options(parser, VARIANTS, ROOT / "bench" / "results" / "dpo.json")
    args = parser.parse_args()

    if args.child:
        print("RESULT " + json.dumps(child(args.child, Path(args.work), args, args.run)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    os.environ["HF_TUNER_CACHE"] = str(work / "cache")
    info = prepare(work, args)
    print(f"work folder {work}\n{json.dumps(info, indent=1)}", file=sys.stderr)
    if info["setting_differences"]:
        sys.exit(f"the sides would not train with the same settings: {info['setting_differences']}")

    def child_command(variant: str, repeat: int) -> list[str]:
        return [sys.executable, __file__, "--child", variant, "--work", str(work), "--run", f"{repeat}",
                *child_flags(args, ("rows", "eval_rows", "max_length", "batch_size", "learning_rate", "beta", "epochs",
                                    "seed", "threads"))]

    runs, load_before, load_after = run_rounds(work, args, args.variants.split(","), child_command, 15)
    medians = medians_of(runs)
    print(f"\n{info['train_pairs']} tweet pairs, gpt2-tweets policy, max_length {args.max_length}, batch {args.batch_size}, "
          f"lr {args.learning_rate:g}, beta {args.beta:g}, {args.epochs:g} epoch, fp32, {args.threads} thread(s), "
          f"medians of {args.repeats}; load average {load_before:.1f} -> {load_after:.1f}\n")
    print("| variant | steps | train s | pairs/s | CPU s/step | held-out reward accuracy | eval loss | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    for v, m in medians.items():
        print(f"| {v} | {m['steps']:g} | {m['train_runtime_s']:.2f} | {m['samples_per_second']:.2f} | "
              f"{m['cpu_s_per_step']:.3f} | {m['eval_reward_accuracy']:.4f} | {m['eval_loss']:.4f} | {m['peak_rss_gb']:.2f} |")
    ratio, cpu_ratio, per_round, per_round_cpu = compare(runs, medians, "hf-tuner", "trl-dpo", "samples_per_second")
    if ratio is not None:
        print(f"\nhf-tuner / trl dpo pairs/s: {ratio:.2f}x (per round: {per_round}; target >= 1.3x)")
        print(f"same on CPU time (trl CPU s/step / hf-tuner CPU s/step): {cpu_ratio:.2f}x (per round: {per_round_cpu})")
    print_grouping(runs, medians)
    if args.json:
        write_json(args.json, args, info, runs, medians, ratio, cpu_ratio, load_before, load_after)


if __name__ == "__main__":
    main()
