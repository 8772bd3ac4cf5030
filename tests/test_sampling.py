"""Length-grouped training batches (hf_tuner.tasks.parts.sampling): batches of about one length, in a random
order. transformers' mega-batch sampler gives the batches of each mega-batch longest to shortest, and
that order cost NER 0.07-0.1 entity F1 against random batches (bench/README.md)."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

BATCH = 16


def lengths_of(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 64) for _ in range(n)]


def batches_of(order: list[int], lengths: list[int]) -> list[list[int]]:
    """The batches a data loader cuts from the sampler's indices (consecutive runs of BATCH)."""
    return [[lengths[i] for i in order[k:k + BATCH]] for k in range(0, len(order), BATCH)]


def falling_share(batches: list[list[int]]) -> float:
    """The share of neighbouring batches whose longest row is shorter than the previous batch's: 0.5 in
    a random order of batches (ties aside), about 1 when a sampler sorts its batches."""
    tops = [max(b) for b in batches]
    pairs = [(a, b) for a, b in zip(tops, tops[1:]) if a != b]
    return sum(b < a for a, b in pairs) / len(pairs)


def padding(batches: list[list[int]]) -> int:
    return sum(max(b) * len(b) - sum(b) for b in batches)


def test_grouped_batches_hold_one_length_each_in_a_random_order():
    from hf_tuner.tasks.parts.sampling import length_grouped_indices

    lengths = lengths_of(2035)  # ner-tweets' train split: 127 full batches and a remainder of 3
    torch.manual_seed(0)
    order = length_grouped_indices(lengths, BATCH)
    assert sorted(order) == list(range(len(lengths)))  # every row once
    batches = batches_of(order, lengths)
    assert max(batches[0]) == max(lengths)  # the longest row first: out of memory at step 1, not later
    # padding against random batches of the same rows (an independent expectation, not this sampler's)
    rng, random_padding = random.Random(1), []
    for _ in range(20):
        perm = list(range(len(lengths)))
        rng.shuffle(perm)
        random_padding.append(padding(batches_of(perm, lengths)))
    assert padding(batches) < 0.1 * min(random_padding)
    # the remainder batch stays last: had it moved up, every batch after it would straddle two groups
    assert len(batches[-1]) == len(lengths) % BATCH and all(len(b) == BATCH for b in batches[:-1])
    # 126 neighbouring pairs: a random order falls about half the time (SE 0.045); 0.65 is 3 SE above it
    assert falling_share(batches) < 0.65


def test_transformers_mega_batch_order_would_be_caught():
    """The check above fails on the sampler this one replaced (so the test can fail)."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = lengths_of(2035)
    torch.manual_seed(0)
    assert falling_share(batches_of(get_length_grouped_indices(lengths, BATCH), lengths)) > 0.9


def test_each_epoch_draws_another_order_and_a_seed_repeats_it():
    from hf_tuner.tasks.parts.sampling import length_grouped_indices

    lengths = lengths_of(500)
    torch.manual_seed(3)
    first, second = length_grouped_indices(lengths, BATCH), length_grouped_indices(lengths, BATCH)
    torch.manual_seed(3)
    assert length_grouped_indices(lengths, BATCH) == first != second
    assert length_grouped_indices([], BATCH) == [] and length_grouped_indices([7, 3], BATCH) == [0, 1]


def test_every_trainer_a_task_builds_groups_with_it():
    """The base objective's trainer (text tasks) and the pair trainers take their training sampler from
    `sampling` under group_by_length, and keep the trainer's own under random order."""
    from datasets import Dataset
    from transformers import Trainer

    from hf_tuner.tasks.parts.sampling import length_grouped

    lengths = lengths_of(2000)
    data = Dataset.from_dict({"input_ids": [[1] * n for n in lengths]})
    cls = length_grouped(Trainer)
    assert cls.__name__ == "Trainer"
    me = SimpleNamespace(train_dataset=data, args=SimpleNamespace(train_sampling_strategy="group_by_length",
                                                                 train_batch_size=8, gradient_accumulation_steps=2))
    sampler = cls._get_train_sampler(me)
    torch.manual_seed(0)
    order = list(iter(sampler))
    assert len(sampler) == 2000 and sorted(order) == list(range(2000))
    assert padding(batches_of(order, lengths)) < 0.2 * padding(batches_of(list(range(2000)), lengths))


@pytest.mark.parametrize("recipe,overrides,expected", [
    ("ner-tweets", [], "random"),  # grouping cost 0.052 +- 0.035 F1 even shuffled
    ("gpt2-tweets", ["data.packing=false"], "random"),  # and 8.0 +- 1.6 perplexity
    ("quickstart", [], "group_by_length"),
    ("tweets-reward", [], "group_by_length"),  # within 1 SE of random order
    ("ner-tweets", ["training.train_sampling_strategy=group_by_length"], "group_by_length"),  # still on request
])
def test_default_order_follows_the_quality_bench(tmp_path, recipe, overrides, expected):
    from hf_tuner.recipes import load_config
    from hf_tuner.run import training_arguments
    from hf_tuner.tasks import get_task

    cfg = load_config(recipe, overrides)
    assert training_arguments(cfg, get_task(cfg.task).bind(cfg), tmp_path).train_sampling_strategy == expected
