"""Task `kto`: Kahneman-Tversky Optimisation of a causal LM with TRL's `KTOTrainer`: completions each
marked desirable or not, no pairs needed. Data: rows of a prompt, a completion and a boolean label
(`data.prompt_column`, `data.completion_column`, `data.label_column`), or preference pairs (chosen
becomes a desirable completion, rejected an undesirable one: TRL's `unpair_preference_dataset`).
Full fine-tuning keeps a frozen copy of the start as the reference; LoRA switches its adapter off
for it. Metrics on held-out rows are TRL's: the implicit rewards beta*log(pi/pi_ref) of desirable
(`reward_chosen`) and undesirable (`reward_rejected`) completions, their difference (`reward_margin`,
0 before training, as the policy is its own reference), the KL estimate and the loss. The train split
is shuffled once and read in order: TRL's KL estimate needs a fixed order (see `preprocess`).
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from ..data import Lengths, Splits
from ..errors import DataError
from .base import CardInfo, DataPart, Job, Loaded, Objective, Task, load_checked, rounded
from .parts.chat import is_conversation
from .parts.families import CausalLMFamily
from .parts.language import complete_prompts
from .parts.preference import (PreferenceData, check_pairs, check_truncated_pairs, drop_truncated_pairs, evaluated_as_train,
                               pair_texts, prompt_column_of, reference_model, standardise_columns, trl_pair_metrics)

KTO_METRICS = {"kl": "kl"}  # besides the pair metric names (rewards/chosen, rewards/margins, ...)


class KTOData(PreferenceData):
    """`data:` of KTO: unpaired rows (prompt, completion, a boolean label) or preference pairs."""

    completion_column: str = "completion"
    label_column: str = "label"
    max_length: int = Field(512, ge=8)


class LabelledCompletions(DataPart):
    """Completions marked desirable (true) or undesirable (false), with TRL's column names (prompt,
    completion, label), or preference pairs (prompt, chosen, rejected) that TRL unpairs."""

    schema = KTOData

    def load(self, job: Job) -> Splits:
        d = job.cfg.data
        columns: dict[str, Optional[str]] = {}  # data.KEY -> column, for pairs or labelled rows

        def pick(splits: Splits) -> dict[str, Optional[str]]:
            names = splits.train.column_names
            pairs = d.completion_column not in names and d.chosen_column in names and d.rejected_column in names
            columns.update({"prompt_column": prompt_column_of(d, names)})
            columns.update({"chosen_column": d.chosen_column, "rejected_column": d.rejected_column} if pairs
                           else {"completion_column": d.completion_column, "label_column": d.label_column})
            return {k: v for k, v in columns.items() if v}

        def check(name: str, ds: Any) -> None:
            (check_pairs if "chosen_column" in columns else check_labelled)(name, ds)

        return load_checked(job, pick, after=standardise_columns(columns), check=check)

    def training_texts(self, job: Job, splits: Splits):
        for col in ("prompt", "completion", "chosen", "rejected"):
            if col in splits.train.column_names and isinstance(splits.train[0][col], str):
                yield from splits.train[col]

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        """Pairs unpaired (TRL's `unpair_preference_dataset`: desirable chosen, undesirable rejected), and
        the train split shuffled once, seeded: TRL's KL estimate pairs each completion with its batch
        neighbours, so KTO trains in the data's order (`sequential`), and unpairing lists a batch's
        chosen completions before its rejected ones."""
        from trl.data_utils import extract_prompt, unpair_preference_dataset

        splits = drop_truncated_pairs(job, splits, processing) if "chosen" in splits.train.column_names else splits

        def prepare(name: str, ds: Any) -> Any:
            if "chosen" in ds.column_names:
                if "prompt" not in ds.column_names:  # whole dialogues (hh-rlhf): the shared start is the prompt
                    ds = ds.map(extract_prompt)
                ds = unpair_preference_dataset(ds)
            return ds.shuffle(seed=job.cfg.training.seed) if name == "train" else ds

        return splits.map(prepare)

    def check_processing(self, job: Job, splits: Splits, processing: Any) -> None:
        if "chosen" in splits.train.column_names:
            check_truncated_pairs(job, splits, processing)

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"train_sampling_strategy": "sequential"}  # see `preprocess`

    def token_lengths(self, job: Job, rows: Any, processing: Any) -> list[Lengths]:
        batch = rows[:]
        if "chosen" in batch:
            chosen, rejected = pair_texts(batch, processing)
            texts = chosen + rejected
        else:
            prompts = batch.get("prompt") or [""] * len(batch["completion"])
            texts = [str(p) + str(c) for p, c in zip(prompts, batch["completion"]) if not is_conversation(c)]
        eos = 1 if getattr(processing, "eos_token_id", None) is not None else 0
        return [Lengths("prompt+completion", [len(x) + eos for x in processing(texts, add_special_tokens=False)["input_ids"]],
                        job.cfg.data.max_length)]


def check_labelled(split: str, ds: Any) -> None:
    """Every label is a boolean, every completion holds something, and both kinds occur in training."""
    labels = ds["label"]
    for i, value in enumerate(labels):
        if not isinstance(value, bool):
            raise DataError(f"the {split} data's label in row {i} is {value!r}, not true or false: KTO labels say whether "
                            "the completion is desirable (true) or not (false)")
    for i, value in enumerate(ds["completion"]):
        if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
            raise DataError(f"the {split} data has an empty completion in row {i}: drop or fill such rows")
    if split == "train" and len(set(labels)) < 2:
        raise DataError("the train data has only " + ("desirable" if labels[0] else "undesirable") + " completions: "
                        "KTO needs both kinds")


class KTOObjective(Objective):
    """TRL's KTO loss against a frozen reference (a copy of the start, or the adapter switched off)."""

    arguments = "trl:KTOConfig"
    primary_metric = "reward_margin"
    greater_is_better = True
    learning_rates = {"full": 5e-6, "lora": 5e-5}  # DPO's: KTO's loss has the same scale (beta x log ratio)
    eval_training_keys = ("beta", "loss_type", "desirable_weight", "undesirable_weight")

    def frozen_copies(self, job: Job) -> int:
        return 1 if job.cfg.method.name == "full" else 0

    def defaults(self, job: Job) -> dict[str, Any]:
        return {"max_length": job.cfg.data.max_length, "remove_unused_columns": False}

    def build_trainer(self, job: Job, args: Any, model: Any, processing: Any, features: Splits,
                      reference: Any = None) -> Any:
        import copy

        from trl import KTOTrainer

        from ..modeling import is_peft

        if reference is None and not is_peft(model):
            reference = copy.deepcopy(model).eval()
        return KTOTrainer(model=model, ref_model=reference, args=args, train_dataset=features.train,
                          eval_dataset=features.validation, processing_class=processing)

    def evaluator(self, job: Job, args: Any, model: Any, processing: Any, features: Splits,
                  start: Optional[Any] = None) -> Any:
        """KTOTrainer in evaluation mode against the checkpoint the run started from (`start`). It
        insists on a train set: the evaluated split stands in for it, and is never trained on."""
        from ..modeling import is_peft

        reference = None if is_peft(model) or start is None else reference_model(job, start, model, processing)
        return self.build_trainer(job, args, model, processing, evaluated_as_train(features), reference)

    def evaluate(self, job: Job, runner: Any, features: Splits, split: str, phase: str = "after") -> dict[str, Any]:
        from ..metrics import strip_metrics

        raw = runner.evaluate(eval_dataset=getattr(features, split), metric_key_prefix="eval")
        extra = {KTO_METRICS[k]: v for k, v in strip_metrics(raw, "eval").items() if k in KTO_METRICS}
        return rounded({**trl_pair_metrics(raw), **extra})

    def predict(self, job: Job, loaded: Loaded, inputs: list[str], **options: Any) -> list[dict[str, Any]]:
        return complete_prompts(job, loaded, inputs, **options)


TASK = Task(
    name="kto",
    family=CausalLMFamily(),
    data=LabelledCompletions(),
    objective=KTOObjective(),
    card=CardInfo("text-generation", "Text Generation"),
    makes="causal-lm",
    starts_from=("causal-lm",),
)
