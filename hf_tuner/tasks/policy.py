"""Tasks `grpo` and `rloo`: a causal-LM policy tuned to maximise a reward with TRL's `GRPOTrainer`
or `RLOOTrainer` (PPO is gone from TRL; these are its policy-optimisation trainers).

The recipe's `reward:` list says what is rewarded (see `hf_tuner.tasks.parts.rewards`: reward models,
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

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from ..config import DataConfig, RunConfig
from ..data import Lengths, Splits, require_text
from ..errors import ConfigError, DataError
from .base import Bare, CardInfo, DataPart, Job, Loaded, Objective, Task, load_checked, model_of, rounded, trl_setting
from .parts.language import complete_prompts
from .parts.chat import check_messages, is_conversation, prompt_text
from .parts.families import CausalLMFamily
from .parts.rewards import RewardSpec



class PromptData(DataConfig):
    """`data:` of policy optimisation: prompts, plus any columns the reward functions read."""

    prompt_column: str = "prompt"
    max_prompt_length: int = Field(64, ge=1)  # tokens; longer prompts are dropped (TRL no longer cuts them) ...
    truncate_prompts: bool = False  # ... or cut to their first max_prompt_length tokens (e.g. review openings)
    max_eval_samples: Optional[int] = Field(64, ge=1)  # held-out prompts completed before and after training


def rising_word(before: list[str], after: list[str]) -> tuple[Optional[str], float]:
    """The word whose share of completions rose most from the `before` samples to the `after` ones (the
    same prompts), and the share of `after` completions containing it; (None, 0.0) when no word's share
    rose. A policy gaming its reward with one token (`#Coachella2015` in 56 of 62 completions after
    training, 7 of 62 before) shows it here, while distinct-2 over all completions hardly moves.
    Hashtags and mentions count by their stem (`rewards.tag_stem`: `#Coachella2015xyz` is `#coachel`),
    as the `shared_tags` penalty compares them."""
    from .parts.rewards import tag_stem, words_of

    def shares(texts: list[str]) -> dict[str, float]:
        counts: dict[str, int] = {}
        for text in texts:
            for word in {tag_stem(w) for w in words_of(text)}:
                counts[word] = counts.get(word, 0) + 1
        return {w: n / max(len(texts), 1) for w, n in counts.items()}

    was, now = shares(before), shares(after)
    rise, word = max(((share - was.get(w, 0.0), w) for w, share in now.items()), default=(0.0, None))
    return (word, now[word]) if word is not None and rise > 0 else (None, 0.0)


def distinct_2(texts: list[str]) -> float:
    """Distinct word bigrams / all word bigrams over the texts (1.0: no bigram repeats)."""
    bigrams = [tuple(words[i:i + 2]) for words in (t.split() for t in texts) for i in range(len(words) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


class Prompts(DataPart):
    """Prompts to complete (`prompt` after loading), plus any columns the reward functions read;
    prompts longer than `data.max_prompt_length` tokens are dropped, or cut."""

    schema = PromptData

    def load(self, job: Job) -> Splits:
        d = job.cfg.data

        def no_clash(name: str, ds: Any) -> Any:
            if d.prompt_column != "prompt" and "prompt" in ds.column_names:
                raise DataError(f"the {name} data has a 'prompt' column besides data.prompt_column="
                                f"{d.prompt_column}: rename or drop one")
            return ds.rename_column(d.prompt_column, "prompt") if d.prompt_column != "prompt" else ds

        def check(name: str, ds: Any) -> None:
            if isinstance(ds[0]["prompt"], str):
                require_text(ds, "prompt", name)
            else:  # conversational prompts (TRL renders them with the chat template)
                for i, value in enumerate(ds["prompt"]):
                    check_messages(value, f"column 'prompt' of the {name} data, row {i}", need_assistant=False)

        return load_checked(job, {"prompt_column": d.prompt_column}, after=no_clash, check=check)

    def training_texts(self, job: Job, splits: Splits):
        for p in splits.train["prompt"]:
            yield from ([m["content"] for m in p] if is_conversation(p) else [str(p)])

    def check_positions(self, job: Job, positions: int) -> None:
        completion = trl_setting(job.cfg, job.objective.arguments, "max_completion_length")
        needed = job.cfg.data.max_prompt_length + completion
        if needed > positions:
            raise ConfigError(f"data.max_prompt_length ({job.cfg.data.max_prompt_length}) + training.max_completion_length "
                              f"({completion}) = {needed} tokens, more than the model's {positions} positions: "
                              "lower one of them")

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        limit = job.cfg.data.max_prompt_length
        dropped: dict[str, int] = {}

        def fits(name: str, ds: Any) -> Any:
            rows = processing([prompt_text(processing, p) for p in ds["prompt"]], add_special_tokens=False)["input_ids"]
            if job.cfg.data.truncate_prompts and not is_conversation(ds[0]["prompt"]):  # a conversation is not cut
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

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        d = job.cfg.data
        ids = processing([prompt_text(processing, p) for p in rows["prompt"]], add_special_tokens=False)["input_ids"]
        return [Lengths("prompt", [len(x) for x in ids], d.max_prompt_length, "cut" if d.truncate_prompts else "dropped")]

    def memory_sequence(self, job: Job, model_config: Any, lengths: list[Any]) -> int:
        kept = [l.longest_kept() for l in lengths]
        completion = trl_setting(job.cfg, job.objective.arguments, "max_completion_length")
        return (max(kept) if kept else job.cfg.data.max_prompt_length) + completion

    def training_rows(self, job: Job, rows: int, lengths: list[Any]) -> int:
        # each prompt is completed num_generations times
        return rows * trl_setting(job.cfg, job.objective.arguments, "num_generations")


@dataclass(frozen=True)
class PolicyOptimization(Objective):
    """TRL's GRPO or RLOO against the recipe's `reward:` list; held-out completions scored before and
    after training (samples, mean reward, distinct-2) and a reward plot."""

    trainer: str = "GRPOTrainer"  # the TRL trainer class ...
    arguments: str = "trl:GRPOConfig"  # ... and its arguments class
    primary_metric = "mean_reward"
    greater_is_better = True
    harness = True
    learning_rates = {"full": 1e-5, "lora": 1e-4}
    sections = {"reward": (list[RewardSpec], ...)}
    eval_training_keys = ("max_completion_length", "temperature", "top_p", "top_k", "repetition_penalty", "reward_weights")

    def check_config(self, cfg: RunConfig) -> list[str]:
        # (run folders named in the recipe are checked when loaded: a recipe stays valid before they exist)
        problems = []
        extra = cfg.training.model_extra or {}
        if not cfg.reward:
            problems.append("reward: the list is empty: name at least one reward (model, model + label, or function)")
        if extra.get("reward_weights") is not None:
            problems.append("set each reward's weight in reward[].weight, not training.reward_weights")
        generations = trl_setting(cfg, self.arguments, "num_generations")
        per_step = extra.get("generation_batch_size") or (
            cfg.training.per_device_train_batch_size * extra.get("steps_per_generation", cfg.training.gradient_accumulation_steps))
        if generations < 2:
            problems.append(f"training.num_generations={generations}: a group needs at least 2 completions per prompt")
        elif per_step % generations:
            problems.append(f"{per_step} completions per generation step (training.generation_batch_size, or "
                            f"per_device_train_batch_size x steps_per_generation) is not divisible by "
                            f"training.num_generations={generations}: make it a multiple")
        beta = trl_setting(cfg, self.arguments, "beta")
        if beta and cfg.model.from_scratch is not None:
            problems.append(f"training.beta={beta} needs a reference model, and a policy built from scratch has none "
                            "saved: start from a trained run (model.name_or_path) or set training.beta=0")
        return problems

    def defaults(self, job: Job) -> dict[str, Any]:
        return {
            "eval_strategy": "no",  # held-out completions are scored before and after training instead
            "logging_steps": 5,
            "reward_weights": [spec.weight for spec in job.cfg.reward],
        }

    def frozen_copies(self, job: Job) -> int:
        return 1 if trl_setting(job.cfg, self.arguments, "beta") and job.cfg.method.name == "full" else 0

    def rewards(self, job: Job) -> list[Any]:
        """The recipe's rewards as TRL reward functions (loaded once per job)."""
        if job.rewards is None:
            from .parts.rewards import build_rewards

            job.rewards = build_rewards(job.cfg.reward)
        return job.rewards

    def prepare(self, job: Job, splits: Splits) -> None:
        """Load the rewards and call each on two held-out prompts, so a broken one fails in `validate`."""
        from .parts.rewards import total_reward

        rows = splits.validation.select(range(min(2, len(splits.validation))))
        prompts = list(rows["prompt"])
        columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
        total_reward(self.rewards(job), [s.weight for s in job.cfg.reward], prompts, [" ok"] * len(prompts),
                     {"completion_ids": [[0]] * len(prompts), **columns})

    def build_trainer(self, job: Job, args: Any, model: Any, processing: Any, features: Splits) -> Any:
        import trl

        return lean_sampling(getattr(trl, self.trainer))(model=model, reward_funcs=self.rewards(job), args=args,
                                                         train_dataset=features.train, processing_class=processing)

    def evaluator(self, job: Job, args: Any, model: Any, processing: Any, features: Splits,
                  start: Optional[Any] = None) -> Any:
        return Bare(model, processing, args)  # only generation and the rewards are needed

    def evaluate(self, job: Job, runner: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        """Complete the held-out prompts, score them with the rewards, keep the samples."""
        from .parts.rewards import total_reward

        ds = getattr(features, split)
        args = runner.args
        prompts = list(ds["prompt"])
        completions, lengths = job.family.complete(
            Loaded(model_of(runner), runner.processing_class, ""), prompts, seed=job.cfg.training.seed, do_sample=True,
            max_new_tokens=getattr(args, "max_completion_length", 64), temperature=getattr(args, "temperature", 1.0),
            top_p=getattr(args, "top_p", 1.0), top_k=getattr(args, "top_k", 0) or None,
            repetition_penalty=getattr(args, "repetition_penalty", 1.0), batch_size=32, document_start=False)
        columns = {c: list(ds[c]) for c in ds.column_names if c != "prompt"}
        weights = [s.weight for s in job.cfg.reward]
        totals, per = total_reward(self.rewards(job), weights, prompts, completions,
                                   {"completion_ids": [[0] * n for n in lengths], **columns}, exact=True)
        job.samples[phase] = [
            {"prompt": p, "completion": c, "reward": round(t, 6), **{f"reward/{k}": v[i] for k, v in per.items()}}
            for i, (p, c, t) in enumerate(zip(prompts, completions, totals))
        ]
        metrics = {"mean_reward": sum(totals) / len(totals)}
        for name, values in per.items():
            known = [v for v in values if v is not None]
            metrics[f"reward/{name}"] = sum(known) / len(known) if known else None
        metrics["mean_length"] = sum(lengths) / len(lengths)
        metrics["distinct_2"] = distinct_2(completions)
        before = job.samples.get("before")
        if phase != "before" and before is not None and len(before) == len(completions):
            # the same held-out prompts before training: one word spreading to most completions is a gamed reward
            metrics["rising_word_share"] = rising_word([s["completion"] for s in before], completions)[1]
        return rounded(metrics)

    def write_artifacts(self, job: Job, run_dir: Path, log_history: list[dict[str, Any]]) -> list[str]:
        from .. import rundir

        written = []
        for phase, name in rundir.SAMPLES.items():
            if phase in job.samples:
                (run_dir / name).write_text("".join(json.dumps(s, ensure_ascii=False) + "\n"
                                                    for s in job.samples[phase]), encoding="utf-8")
                written.append(name)
        if plot_reward(log_history, run_dir / rundir.REWARD_PLOT):
            written.append(rundir.REWARD_PLOT)
        return written

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
        return complete_prompts(job, loaded, inputs, **options)


@functools.lru_cache(maxsize=None)
def lean_sampling(base: type) -> type:
    """TRL's `base` trainer (GRPOTrainer, RLOOTrainer) sampling its completions with `loops.sample`
    instead of `model.generate` when the run asks for plain temperature sampling from a decoder
    (no vLLM, continuous batching, images, DeepSpeed / FSDP or prompt-learning adapter, and no top-k,
    top-p, repetition penalty or other logits processor): the same distribution with less work per
    token (`torch.multinomial` alone took 14 ms of a 0.19 s CPU step, bench/README.md). TRL's own
    padding, eos masking and everything after stay as they are; any other case is TRL's unchanged."""

    def _generate_single_turn(self: Any, prompt_ids: Any, images: Any, multimodal_fields: Any, *rest: Any, **kw: Any) -> Any:
        from accelerate.utils import DistributedType

        model = self.accelerator.unwrap_model(self.model)
        peft = getattr(model, "active_peft_config", None)
        plain = (not getattr(self, "use_vllm", False) and not getattr(self, "use_transformers_continuous_batching", False)
                 and not multimodal_fields and not any(i is not None for i in images or [])
                 and self.accelerator.distributed_type not in (DistributedType.DEEPSPEED, DistributedType.FSDP)
                 and not getattr(model.config, "is_encoder_decoder", False)
                 and not (peft is not None and peft.is_prompt_learning))
        if not plain:
            return base._generate_single_turn(self, prompt_ids, images, multimodal_fields, *rest, **kw)
        model.generate = functools.partial(sample_or_generate, model)  # an instance attribute shadows the method
        try:
            return base._generate_single_turn(self, prompt_ids, images, multimodal_fields, *rest, **kw)
        finally:
            del model.generate

    return type(f"HfTuner{base.__name__}", (base,), {"_generate_single_turn": _generate_single_turn,
                                                     "__doc__": lean_sampling.__doc__, "__module__": __name__})


def sample_or_generate(model: Any, generation_config: Any = None, **inputs: Any) -> Any:
    """`model.generate(**inputs, generation_config=...)`, through `loops.sample` when the settings are
    plain temperature sampling of token ids (`loops.plain_sampling`)."""
    from .parts.loops import plain_sampling, sample

    config = generation_config if generation_config is not None else model.generation_config
    # (gradient checkpointing in train mode turns the cache off, which the loop needs; TRL switches it
    # off around generation, this is for anyone who does not)
    checkpointing = model.training and getattr(model, "is_gradient_checkpointing", False)
    if set(inputs) - {"input_ids", "attention_mask"} or not plain_sampling(config) or checkpointing:
        return type(model).generate(model, generation_config=generation_config, **inputs)
    eos = config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if eos else 0)
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = inputs["input_ids"].new_ones(inputs["input_ids"].shape)
    return sample(model, inputs["input_ids"], mask, config.max_new_tokens, config.temperature, eos, pad)


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


def policy_task(name: str, trainer: str, arguments: str) -> Task:
    return Task(name=name, family=CausalLMFamily(), data=Prompts(),
                objective=PolicyOptimization(trainer=trainer, arguments=arguments),
                card=CardInfo("text-generation", "Text Generation"), makes="causal-lm", starts_from=("causal-lm",))


GRPO = policy_task("grpo", "GRPOTrainer", "trl:GRPOConfig")
RLOO = policy_task("rloo", "RLOOTrainer", "trl:RLOOConfig")
