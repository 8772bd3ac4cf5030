"""Reward-model training throughput, side by side: hf-tuner's `reward-modeling` task and TRL's own
`trl reward` CLI on the same model, pairs and settings.

Variants (each in its own child process, the same explicit thread count, run interleaved):
  hf-tuner         `hf_tuner.run.train` on the bundled `tweets-reward` recipe (pairs pre-tokenised by
                   hf-tuner, trained by trl.RewardTrainer in length-grouped batches, the default), its
                   data pointed at the bench's JSONL files
  hf-tuner-random  the same with `training.train_sampling_strategy=random` (pairs in random order, as TRL)
  trl-reward       the real `.venv/bin/trl reward` CLI (which relaunches itself through `accelerate launch`)

Pairs (--pairs): `recipe`, the recipe's own (a shared tweet opening as prompt, a positive and a negative
rest of unrelated length), or `unrelated`, whole texts with no prompt: pair i's chosen text is its
opening + positive rest, its rejected text the next pair's opening + negative rest (hh-rlhf-like
pairs, whose two sides share nothing and differ in length).

Same for both: packaged MiniLM (all-MiniLM-L6-v2, a one-output score head on top), the first --rows
pairs of hf-tuner's own train split of packaged:tweet-preferences (written once to a JSONL file that
both sides read), max_length, batch size, learning rate, epochs, seed, fp32, no gradient
checkpointing (RewardConfig turns it on by default: off on both sides), no evaluation or checkpoints
during training, and OMP_NUM_THREADS=--threads (accelerate would otherwise set 1 for the TRL CLI;
the hf-tuner child also calls torch.set_num_threads). Throughput is each side's own Trainer metric
(train_samples_per_second = pairs/s); the TRL CLI's is parsed from the metrics line it prints. A
sitecustomize.py on both sides' PYTHONPATH times `Trainer.train` in CPU seconds and records torch's thread
count (see TIMING_HOOK in _common.py); before each run the script waits (--quiet-wait) for other work on the machine to stop.

Known difference, by necessity: `trl reward` on a BERT tokenizer (no eos token) crashes while
appending one unless given `--eos_token '[SEP]'`; it then tokenises prompt + chosen + "[SEP]", so
each of its sequences ends [SEP] [SEP] (one token longer than hf-tuner's [CLS] ... [SEP]).

After training, the TRL child scores the same held-out pairs with hf-tuner's pair metrics (pairwise
accuracy), so the two trained models can be compared too.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_reward.py [--rows 1000] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (add_round_options, child_flags, compare, final_metrics, medians_of, printed_dicts, print_grouping,
                     run_rounds, setting_differences, trl_bin, write_json)

VARIANTS = ("hf-tuner", "hf-tuner-random", "trl-reward")
RECIPE = "tweets-reward"
ROOT = Path(__file__).resolve().parent.parent
# RewardConfig fields that may differ between the two sides (every other one must be equal): paths and
# names; max_length (hf-tuner cuts pairs to data.max_length itself and gives RewardTrainer None; TRL drops
# longer pairs: none here, the script counts them); eos_token (TRL needs '[SEP]', see above);
# train_sampling_strategy (hf-tuner groups pairs by length: what the bench measures; hf-tuner-random does not)
IGNORED = {"output_dir", "logging_dir", "run_name", "hub_token", "project", "max_length", "eos_token", "disable_tqdm",
           "train_sampling_strategy"}


def hf_overrides(work: Path, args: argparse.Namespace, variant: str = "hf-tuner") -> list[str]:
    order = ["training.train_sampling_strategy=random"] if variant == "hf-tuner-random" else []
    return order + [f"data.train={work / 'data' / 'train.jsonl'}", f"data.validation={work / 'val.jsonl'}",
            f"data.max_length={args.max_length}", f"training.per_device_train_batch_size={args.batch_size}",
            f"training.learning_rate={args.learning_rate}", f"training.num_train_epochs={args.epochs}",
            f"training.seed={args.seed}", "training.logging_steps=10", "training.eval_strategy=no",
            "training.save_strategy=no", "eval.before_training=false"]


def trl_args(work: Path, args: argparse.Namespace, out: Path) -> list[str]:
    from hf_tuner.packaged import resolve_model

    return ["--model_name_or_path", resolve_model("packaged:all-MiniLM-L6-v2"),
            "--dataset_name", str(work / "data"),  # a folder holding train.jsonl: load_dataset(folder)["train"]
            "--output_dir", str(out), "--max_length", str(args.max_length),
            "--per_device_train_batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate),
            "--num_train_epochs", str(args.epochs), "--seed", str(args.seed), "--logging_steps", "10",
            "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
            "--bf16", "false", "--gradient_checkpointing", "false", "--use_cpu", "true",
            "--per_device_eval_batch_size", "64", "--save_total_limit", "1",  # unused (no eval, no saves): as hf-tuner
            "--eos_token", "[SEP]"]  # a BERT tokenizer has no eos token: TRL crashes appending one without this


def prepare(work: Path, args: argparse.Namespace) -> dict:
    """Write hf-tuner's train split (first --rows pairs) and --eval-rows held-out pairs as JSONL; check that
    both sides resolve the same training settings; count each side's tokens."""
    from transformers import AutoTokenizer

    from hf_tuner.recipes import load_config
    from hf_tuner.run import training_arguments
    from hf_tuner.tasks import get_task
    from trl.scripts.reward import make_parser

    cfg = load_config(RECIPE, [f"data.max_length={args.max_length}", f"training.seed={args.seed}"])
    job = get_task(cfg.task).bind(cfg)
    splits = job.data.load(job)
    train = splits.train.select(range(min(args.rows, len(splits.train))))
    val = splits.validation.select(range(min(args.eval_rows, len(splits.validation))))
    if args.pairs == "unrelated":
        train, val = unrelated(train), unrelated(val)
    (work / "data").mkdir(parents=True)
    train.to_json(str(work / "data" / "train.jsonl"), lines=True, force_ascii=False)
    val.to_json(str(work / "val.jsonl"), lines=True, force_ascii=False)

    # the settings each side would train with, compared field by field
    cfg = load_config(RECIPE, hf_overrides(work, args))
    task = get_task(cfg.task).bind(cfg)
    ours = training_arguments(cfg, task, work / "probe").to_dict()
    _, theirs, _, _ = make_parser().parse_args_and_config(trl_args(work, args, work / "probe"))
    theirs = theirs.to_dict()
    differences = setting_differences(ours, theirs, IGNORED)

    tok = AutoTokenizer.from_pretrained(resolve_model_path())
    prompts = train["prompt"] if "prompt" in train.column_names else [""] * len(train)
    texts_c = [p + c for p, c in zip(prompts, train["chosen"])]
    texts_r = [p + r for p, r in zip(prompts, train["rejected"])]
    ours_ids = tok(texts_c + texts_r, truncation=True, max_length=args.max_length)["input_ids"]
    trl_ids = tok([t + "[SEP]" for t in texts_c + texts_r])["input_ids"]
    n = len(train)
    trl_kept = sum(1 for i in range(n) if len(trl_ids[i]) <= args.max_length and len(trl_ids[n + i]) <= args.max_length)
    return {"train_pairs": n, "eval_pairs": len(val), "setting_differences": differences,
            "tokens": {"hf-tuner": sum(map(len, ours_ids)), "trl-reward": sum(map(len, trl_ids))},
            "pairs_over_max_length": {"hf-tuner (cut)": sum(1 for ids in tok(texts_c + texts_r)["input_ids"]
                                                           if len(ids) > args.max_length),
                                      "trl-reward (dropped pairs)": n - trl_kept}}


def unrelated(pairs: Any) -> Any:
    """Whole-text pairs with nothing shared: pair i's opening + positive rest, and pair i+1's opening
    + negative rest."""
    from datasets import Dataset

    n = len(pairs)
    rows = [pairs[i] for i in range(n)]
    return Dataset.from_dict({"chosen": [r["prompt"] + r["chosen"] for r in rows],
                              "rejected": [rows[(i + 1) % n]["prompt"] + rows[(i + 1) % n]["rejected"] for i in range(n)]})


def resolve_model_path() -> str:
    from hf_tuner.packaged import resolve_model

    return resolve_model("packaged:all-MiniLM-L6-v2")


def run_hf_tuner(work: Path, args: argparse.Namespace, run: str, variant: str) -> dict:
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train

    cfg = load_config(RECIPE, hf_overrides(work, args, variant))
    summary = train(cfg, "bench-reward", str(work / f"{variant}-{run}"), overwrite=True, argv=["bench"], on_status=lambda m: None).model_dump()
    t = summary["train"]
    return {"samples_per_second": t["samples_per_second"], "steps_per_second": t["steps_per_second"],
            "train_runtime_s": t["runtime_s"], "steps": t["global_steps"], "train_loss": round(t["train_loss"], 4),
            "eval_accuracy": summary["metrics"]["accuracy"],
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def run_trl(work: Path, args: argparse.Namespace, run: str) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_tuner.tasks.parts.preference import pair_encoder
    from hf_tuner.tasks.reward_modeling import pair_metrics
    from datasets import load_dataset

    out = work / f"trl-{run}"
    proc = subprocess.run([trl_bin(), "reward", *trl_args(work, args, out)], capture_output=True, text=True,
                          cwd=work, env=os.environ)
    if proc.returncode != 0:
        raise RuntimeError(f"trl reward failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    m = final_metrics(printed_dicts(proc.stdout + "\n" + proc.stderr))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    # score the same held-out pairs as hf-tuner does (its tokenisation, its pair metrics)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    val = load_dataset("json", data_files=str(work / "val.jsonl"), split="train")
    val = val.map(pair_encoder(tok, args.max_length), batched=True, remove_columns=val.column_names)
    torch.manual_seed(0)
    metrics = pair_metrics(model, val, tok.pad_token_id, 64)
    return {"samples_per_second": m["train_samples_per_second"], "steps_per_second": m["train_steps_per_second"],
            "train_runtime_s": round(m["train_runtime"], 2), "steps": round(m["train_steps_per_second"] * m["train_runtime"]),
            "train_loss": round(m["train_loss"], 4), "eval_accuracy": metrics["accuracy"], "peak_rss_gb": round(peak, 2)}


def child(variant: str, work: Path, args: argparse.Namespace, run: str) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    return run_trl(work, args, run) if variant == "trl-reward" else run_hf_tuner(work, args, run, variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="training pairs (one epoch: rows / batch steps)")
    parser.add_argument("--eval-rows", type=int, default=128, help="held-out pairs scored after training")
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pairs", choices=("recipe", "unrelated"), default="recipe",
                        help="the recipe's pairs (shared opening) or unrelated whole texts (see above)")
    add_round_options(parser, VARIANTS, ROOT / "bench" / "results" / "reward.json")
    args = parser.parse_args()

    if args.child:
        print("RESULT " + json.dumps(child(args.child, Path(args.work), args, args.run)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    os.environ["HF_TUNER_CACHE"] = str(work / "cache")
    info = prepare(work, args)
    print(f"work folder {work}\n{json.dumps(info, indent=1)}", file=sys.stderr)
    if info["setting_differences"]:
        sys.exit(f"the two sides would not train with the same settings: {info['setting_differences']}")

    def child_command(variant: str, repeat: int) -> list[str]:
        return [sys.executable, __file__, "--child", variant, "--work", str(work), "--run", f"{repeat}",
                *child_flags(args, ("rows", "eval_rows", "max_length", "batch_size", "learning_rate", "epochs", "seed",
                                    "threads", "pairs"))]

    runs, load_before, load_after = run_rounds(work, args, args.variants.split(","), child_command, 11)
    medians = medians_of(runs)
    print(f"\n{info['train_pairs']} {args.pairs} pairs, MiniLM-L6 reward model, max_length {args.max_length}, batch {args.batch_size}, "
          f"lr {args.learning_rate:g}, {args.epochs:g} epoch, fp32, {args.threads} thread(s), medians of {args.repeats}; "
          f"load average {load_before:.1f} -> {load_after:.1f}\n")
    print("| variant | steps | train s | pairs/s | steps/s | CPU s/step | torch threads | held-out accuracy | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v, m in medians.items():
        print(f"| {v} | {m['steps']:g} | {m['train_runtime_s']:.2f} | {m['samples_per_second']:.2f} | "
              f"{m['steps_per_second']:.3f} | {m['cpu_s_per_step']:.3f} | {m['torch_threads']:g} | "
              f"{m['eval_accuracy']:.3f} | {m['peak_rss_gb']:.2f} |")
    ratio, cpu_ratio, per_round, per_round_cpu = compare(runs, medians, "hf-tuner", "trl-reward", "samples_per_second")
    if ratio is not None:
        print(f"\nhf-tuner / trl reward pairs/s: {ratio:.2f}x (per round: {per_round}; target >= 1.3x)")
        print(f"same on CPU time (trl CPU s/step / hf-tuner CPU s/step): {cpu_ratio:.2f}x (per round: {per_round_cpu})")
    print_grouping(runs, medians)
    if args.json:
        write_json(args.json, args, info, runs, medians, ratio, cpu_ratio, load_before, load_after)


if __name__ == "__main__":
    main()
