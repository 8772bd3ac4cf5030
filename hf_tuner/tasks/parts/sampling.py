"""Length-grouped training batches (`training.train_sampling_strategy: group_by_length`: the default of
text classification, QA, seq2seq, reward models and DPO), for every trainer a task builds.

transformers' `LengthGroupedSampler` draws a random permutation, cuts it into mega-batches of up to 50
batches, sorts each mega-batch by length (longest first) and returns the mega-batches one after another.
Inside a mega-batch the batches therefore come in order of falling length: each epoch is a few sweeps
from the longest examples to the shortest, and on data whose length says something about the example
(long tweets hold more entities; a long continuation is a different kind of text) the model trains on
one kind of batch for dozens of steps, then on another. That ordering was most of what grouping cost
(bench/README.md, "Length-grouped batches and quality": half of NER's F1 gap, four fifths of unpacked
causal-LM's perplexity gap; what is left made random order those two tasks' default). Here the batches of all the mega-batches are
shuffled as well, so each batch still holds examples of about one length (the speed) while the order
of batches is as random as in random sampling. The longest example goes into the first batch, as in
transformers, so that running out of memory happens at the first step.

The sampler draws from the global torch generator, as transformers' does: the run pipeline saves
that state before training, so a resumed run orders its batches as the interrupted one did.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

MEGA_BATCHES = 50  # batches per mega-batch, transformers' default (fewer on small data sets)


def length_grouped_indices(lengths: Sequence[int], batch_size: int, generator: Any = None,
                           mega_batches: Optional[int] = None) -> list[int]:
    """Indices of one epoch: every `batch_size` consecutive ones of about one length, the batches in a
    random order (a short remainder batch last), the longest example in the first batch."""
    import torch

    n = len(lengths)
    if n == 0:
        return []
    if mega_batches is None:  # transformers' rule: 50, or fewer so that there are at least 4 mega-batches
        mega_batches = max(1, min(n // (batch_size * 4), MEGA_BATCHES))
    order = torch.randperm(n, generator=generator).tolist()
    size = mega_batches * batch_size
    batches: list[list[int]] = []
    for start in range(0, n, size):
        mega = sorted(order[start:start + size], key=lambda i: lengths[i], reverse=True)
        batches.extend(mega[i:i + batch_size] for i in range(0, len(mega), batch_size))
    # the data loader cuts the indices into batches of `batch_size` again: a short batch (the data
    # set's remainder, from the last mega-batch) must stay last, or every batch after it would straddle two
    short = batches.pop() if len(batches[-1]) < batch_size else None
    shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    if short is not None:
        shuffled.append(short)
    order = [i for batch in shuffled for i in batch]
    longest = max(range(n), key=lambda k: lengths[order[k]])  # into the first batch, as transformers does
    order[0], order[longest] = order[longest], order[0]
    return order


def input_lengths(dataset: Any) -> list[int]:
    """Each row's token count (its `input_ids`)."""
    return [len(ids) for ids in dataset["input_ids"]]


def length_grouped(trainer_class: Any, lengths: Callable[[Any], list[int]] = input_lengths,
                   columns: Sequence[str] = ("input_ids",)) -> Any:
    """`trainer_class` whose training batches, under `train_sampling_strategy: group_by_length`, come
    from `length_grouped_indices` with `lengths(dataset)` (a data set holding all of `columns`; other
    data sets and strategies keep the trainer's own sampler). Batches of `train_batch_size x
    gradient_accumulation_steps` are grouped, as in transformers, so one optimizer step sees one length
    class; under accelerate every process draws the same order and takes its share of each batch."""
    from torch.utils.data import Sampler

    def grouped(args: Any, dataset: Any) -> bool:
        names = set(getattr(dataset, "column_names", None) or [])
        return args.train_sampling_strategy == "group_by_length" and set(columns) <= names

    class LengthGroupedSampler(Sampler):
        def __init__(self, row_lengths: list[int], batch_size: int) -> None:
            self.lengths, self.batch_size = row_lengths, batch_size

        def __len__(self) -> int:
            return len(self.lengths)

        def __iter__(self):
            return iter(length_grouped_indices(self.lengths, self.batch_size))

    class LengthGrouped(trainer_class):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            if not grouped(self.args, dataset):
                return super()._get_train_sampler(train_dataset)
            return LengthGroupedSampler(lengths(dataset), self.args.train_batch_size * self.args.gradient_accumulation_steps)

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            # transformers also groups evaluation batches under group_by_length, in an order seeded by
            # the run's seed (the loss and metrics do not depend on it); it finds lengths in
            # `input_ids` only, so a data set of other columns gets them from `lengths`
            if not grouped(self.args, eval_dataset):
                return super()._get_eval_sampler(eval_dataset)
            import torch
            from transformers.trainer_pt_utils import LengthGroupedSampler as EvalSampler

            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EvalSampler(self.args.eval_batch_size, lengths=lengths(eval_dataset),
                               generator=torch.Generator().manual_seed(seed))

    LengthGrouped.__name__ = LengthGrouped.__qualname__ = trainer_class.__name__
    return LengthGrouped
