"""Tasks `grpo` and `rloo`: a causal-LM policy tuned to maximise a reward with TRL's `GRPOTrainer`
or `RLOOTrainer` (PPO is gone from TRL; these are its policy-optimisation trainers).

The recipe's `reward:` list says what is rewarded (see `hf_tuner.rewards`: reward models,
classifier labels, Python functions, with weights); prompts come from `data.prompt_column`, and
every other data column reaches reward functions as a keyword argument. TRL's `training:` names
(`num_generations`, `max_completion_length`, `beta`, `temperature`, ...) are checked against
GRPOConfig / RLOOConfig like any arguments class.

Every run shows what it did: before and after training the policy completes a fixed set of
held-out prompts (seeded sampling, TRL's generation settings), the completions are scored by the
same rewards and written to `samples_before.jsonl` / `samples_after.jsonl`; the metrics are the
mean (weighted) reward, each reward's mean, the mean completion length and distinct-2 (distinct
word bigrams / all bigrams: a policy that games the reward by repeating itself shows up there);
`reward.png` plots mean reward and KL per logged step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from ..config import DataConfig
from ..data import Splits, finish_splits, load_splits, require_columns, require_text
from ..errors import ConfigError, DataError
from ..rewards import RewardSpec
from .causal_lm import CausalLM

DEFAULT_LEARNING_RATE = {"full": 1e-5, "lora": 1e-4}
SAMPLES = {"before": "samples_before.jsonl", "after": "samples_after.jsonl"}
REWARD_PLOT = "reward.png"


class PromptData(DataConfig):
    """`data:` of policy optimisation: prompts, plus any columns the reward functions read."""

    prompt_column: str = "prompt"
    max_prompt_length: int = Field(64, ge=1)  # tokens; longer prompts are dropped (TRL no longer cuts them) ...
    truncate_prompts: bool = False  # ... or cut to their first max_prompt_length tokens (e.g. review openings)
    max_eval_samples: Optional[int] = Field(64, ge=1)  # held-out prompts completed before and after training


def distinct_2(texts: list[str]) -> float:
    """Distinct word bigrams / all word bigrams over the texts (1.0: no bigram repeats)."""
    bigrams = [tuple(words[i:i + 2]) for words in (t.split() for t in texts) for i in range(len(words) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


class PolicyOptimization(CausalLM):
    """What GRPO and RLOO share; a subclass names its TRL trainer and config."""

    data_schema = PromptData
    primary_metric = "mean_reward"
    greater_is_better = True
    harness = True
    model_kinds = ("causal-lm", "dpo", "grpo", "rloo")
    sections = {"reward": (list[RewardSpec], ...)}
    eval_training_keys = ("max_completion_length", "temperature", "top_p", "top_k", "repetition_penalty", "reward_weights")
    trainer_name = ""  # the TRL trainer class

    def __init__(self, cfg):
        super().__init__(cfg)
        self._rewards: Optional[list[Any]] = None
        self.samples: dict[str, list[dict[str, Any]]] = {}

    # ---- recipe ------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg) -> list[str]:
        # (run folders named in the recipe are checked when loaded: a recipe stays valid before they exist)
        problems = super(CausalLM, cls).check_config(cfg)
        extra = cfg.training.model_extra or {}
        if not cfg.reward:
            problems.append("reward: the list is empty: name at least one reward (model, model + label, or function)")
        if extra.get("reward_weights") is not None:
            problems.append("set each reward's weight in reward[].weight, not training.reward_weights")
        generations = cls.setting(cfg, "num_generations")
        per_step = extra.get("generation_batch_size") or (
            cfg.training.per_device_train_batch_size * extra.get("steps_per_generation", cfg.training.gradient_accumulation_steps))
        if generations < 2:
            problems.append(f"training.num_generations={generations}: a group needs at least 2 completions per prompt")
        elif per_step % generations:
            problems.append(f"{per_step} completions per generation step (training.generation_batch_size, or "
                            f"per_device_train_batch_size x steps_per_generation) is not divisible by "
                            f"training.num_generations={generations}: make it a multiple")
        beta = cls.setting(cfg, "beta")
        if beta and cfg.model.from_scratch is not None:
            problems.append(f"training.beta={beta} needs a reference model, and a policy built from scratch has none "
                            "saved: start from a trained run (model.name_or_path) or set training.beta=0")
        return problems

    @classmethod
    def setting(cls, cfg, name: str) -> Any:
        """A TRL config value of the recipe: what `training:` sets, else the config class's default."""
        from ..arguments import import_object

        extra = cfg.training.model_extra or {}
        return extra[name] if name in extra else import_object(cls.arguments).__dataclass_fields__[name].default

    def default_learning_rate(self) -> float:
        return DEFAULT_LEARNING_RATE[self.cfg.method.name]

    def training_defaults(self) -> dict[str, Any]:
        return {
            "eval_strategy": "no",  # held-out completions are scored before and after training instead
            "logging_steps": 5,
            "reward_weights": [spec.weight for spec in self.cfg.reward],
        }

    # ---- data --------------------------------------------------------------------------------
    def load_data(self) -> Splits:
        d = self.cfg.data
        splits = load_splits(d)
        for name, ds in splits.items():
            require_columns(ds, [d.prompt_column], name, splits.sources[name], ["prompt_column"])
            if d.prompt_column != "prompt":
                if "prompt" in ds.column_names:
                    raise DataError(f"the {name} data has a 'prompt' column besides data.prompt_column="
                                    f"{d.prompt_column}: rename or drop one")
        splits = splits.map(lambda name, ds: ds.rename_column(d.prompt_column, "prompt") if d.prompt_column != "prompt" else ds)
        splits = finish_splits(splits, d, self.cfg.training.seed)
        for name, ds in splits.items():
            if isinstance(ds[0]["prompt"], str):
                require_text(ds, "prompt", name)
        return splits

    def training_texts(self, splits: Splits):
        yield from (str(p) for p in splits.train["prompt"])

    def check_positions(self, positions: int) -> None:
        completion = self.setting(self.cfg, "max_completion_length")
        needed = self.cfg.data.max_prompt_length + completion
        if needed > positions:
            raise ConfigError(f"data.max_prompt_length ({self.cfg.data.max_prompt_length}) + training.max_completion_length "
                              f"({completion}) = {needed} tokens, more than the model's {positions} positions: "
                              "lower one of them")

    def token_lengths(self, rows: Any, processing: Any) -> list[Any]:
        from ..preflight import Lengths

        d = self.cfg.data
        ids = processing([str(p) for p in rows["prompt"]], add_special_tokens=False)["input_ids"]
        return [Lengths("prompt", [len(x) for x in ids], d.max_prompt_length, "cut" if d.truncate_prompts else "dropped")]

    def memory_sequence(self, model_config: Any, lengths: list[Any]) -> int:
        kept = [l.longest_kept() for l in lengths]
        return (max(kept) if kept else self.cfg.data.max_prompt_length) + self.setting(self.cfg, "max_completion_length")

    def frozen_copies(self) -> int:
        return 1 if self.setting(self.cfg, "beta") and self.cfg.method.name == "full" else 0

    def training_rows(self, rows: int, lengths: list[Any]) -> int:
        return rows * self.setting(self.cfg, "num_generations")  # each prompt is completed num_generations times

    def load_model(self, splits: Splits, processing: Any) -> Any:
        model = super().load_model(splits, processing)
        self.check_rewards(splits)
        return model

    @property
    def rewards(self) -> list[Any]:
        """The recipe's rewards as TRL reward functions (loaded once)."""
        if self._rewards is None:
            from ..rewards import build_rewards

            self._rewards = build_rewards(self.cfg.reward)
        return self._rewards

    def check_rewards(self, splits: Splits) -> None:
        """Call every reward on two held-out prompts, so a broken function fails in `validate`."""
        from ..rewards import total_reward

        rows = splits.validation.select(range(min(2, len(splits.validation))))
        prompts = list(rows["prompt"])
        columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
        total_reward(self.rewards, [s.weight for s in self.cfg.reward], prompts, [" ok"] * len(prompts),
                     completion_ids=[[0]] * len(prompts), **columns)

    def preprocess(self, splits: Splits, processing: Any) -> Splits:
        limit = self.cfg.data.max_prompt_length
        dropped: dict[str, int] = {}

        def fits(name: str, ds: Any) -> Any:
            rows = processing([str(p) for p in ds["prompt"]], add_special_tokens=False)["input_ids"]
            if self.cfg.data.truncate_prompts:
                cut = [processing.decode(ids[:limit]).strip() if len(ids) > limit else None for ids in rows]
                if any(c is not None for c in cut):
                    ds = ds.map(lambda row, i: {"prompt": cut[i] if cut[i] is not None else row["prompt"]},
                                with_indices=True, desc=f"Cutting {name} prompts")
                return ds
            lengths = [len(ids) for ids in rows]
            keep = [i for i, n in enumerate(lengths) if n <= limit]
            if not keep:
                raise DataError(f"no {name} prompt fits in data.max_prompt_length={limit} tokens: raise it")
            if len(keep) < len(ds):
                dropped[name] = len(ds) - len(keep)
                ds = ds.select(keep)
            return ds

        features = splits.map(fits)
        for name, n in dropped.items():
            features.notes.append(f"{name}: dropped {n} prompts longer than data.max_prompt_length={limit} tokens")
        return features

    # ---- training ----------------------------------------------------------------------------
    def build_trainer(self, args: Any, model: Any, processing: Any, train_dataset: Any, eval_dataset: Any) -> Any:
        if train_dataset is None:  # `hf-tuner eval`: only generation and the rewards are needed
            from transformers import Trainer

            return Trainer(model=model, args=args, processing_class=processing)
        import trl

        trainer_cls = getattr(trl, self.trainer_name)
        return trainer_cls(model=model, reward_funcs=self.rewards, args=args, train_dataset=train_dataset,
                           processing_class=processing)

    def evaluate(self, trainer: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        """Complete the held-out prompts, score them with the rewards, keep the samples."""
        from ..rewards import total_reward

        ds = getattr(features, split)
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer = trainer.processing_class
        args = trainer.args
        prompts = list(ds["prompt"])
        completions, lengths = generate(model, tokenizer, prompts, seed=self.cfg.training.seed,
                                        max_new_tokens=getattr(args, "max_completion_length", 64),
                                        temperature=getattr(args, "temperature", 1.0), top_p=getattr(args, "top_p", 1.0),
                                        top_k=getattr(args, "top_k", 0) or None,
                                        repetition_penalty=getattr(args, "repetition_penalty", 1.0))
        columns = {c: list(ds[c]) for c in ds.column_names if c != "prompt"}
        weights = [s.weight for s in self.cfg.reward]
        totals, per = total_reward(self.rewards, weights, prompts, completions, completion_ids=[[0] * n for n in lengths],
                                   **columns)
        self.samples[phase] = [
            {"prompt": p, "completion": c, "reward": round(t, 6), **{f"reward/{k}": v[i] for k, v in per.items()}}
            for i, (p, c, t) in enumerate(zip(prompts, completions, totals))
        ]
        metrics = {"mean_reward": sum(totals) / len(totals)}
        for name, values in per.items():
            known = [v for v in values if v is not None]
            metrics[f"reward/{name}"] = sum(known) / len(known) if known else None
        metrics["mean_length"] = sum(lengths) / len(lengths)
        metrics["distinct_2"] = distinct_2(completions)
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}

    def write_artifacts(self, run_dir: Path, log_history: list[dict[str, Any]]) -> list[str]:
        written = []
        for phase, name in SAMPLES.items():
            if phase in self.samples:
                (run_dir / name).write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in self.samples[phase]),
                                            encoding="utf-8")
                written.append(name)
        if plot_reward(log_history, run_dir / REWARD_PLOT):
            written.append(REWARD_PLOT)
        return written


class GRPO(PolicyOptimization):
    name = "grpo"
    arguments = "trl:GRPOConfig"
    trainer_name = "GRPOTrainer"


class RLOO(PolicyOptimization):
    name = "rloo"
    arguments = "trl:RLOOConfig"
    trainer_name = "RLOOTrainer"


def generate(model: Any, tokenizer: Any, prompts: list[Any], seed: int, max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, top_k: Optional[int] = None, repetition_penalty: float = 1.0,
             batch_size: int = 32) -> tuple[list[str], list[int]]:
    """Sampled completions of `prompts` (as TRL samples them: the prompt tokenised as the tokenizer
    does by default, left-padded), seeded; returns (texts, token counts up to eos)."""
    import torch

    from ..rewards import as_text

    was_training = model.training
    model.eval()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    texts, lengths = [], []
    eos = tokenizer.eos_token_id
    for start in range(0, len(prompts), batch_size):
        batch = [as_text(p) for p in prompts[start:start + batch_size]]
        rows = tokenizer(batch)["input_ids"]
        rows = [r or [eos] for r in rows]
        width = max(len(r) for r in rows)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=model.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                                 pad_token_id=pad, eos_token_id=eos)
        for row in out[:, width:].tolist():
            n = row.index(eos) + 1 if eos in row else len(row)
            lengths.append(n)
            texts.append(tokenizer.decode(row[:n], skip_special_tokens=True))
    torch.random.set_rng_state(generator_state)
    model.train(was_training)
    return texts, lengths


def plot_reward(history: list[dict[str, Any]], path: Path) -> bool:
    """Mean reward (and KL, when logged) per logged training step; False when nothing was logged."""
    points = [(h["step"], h["reward"], h.get("kl")) for h in history if "reward" in h and "step" in h]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [p[0] for p in points]
    ax.plot(steps, [p[1] for p in points], "o-", color="tab:green", label="mean reward")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    kl = [(s, p[2]) for s, p in zip(steps, points) if p[2] is not None]
    if kl:
        twin = ax.twinx()
        twin.plot(*zip(*kl), "s--", color="tab:red", label="KL to reference")
        twin.set_ylabel("KL")
        twin.legend(loc="lower right")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
