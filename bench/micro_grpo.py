"""The microbenchmarks behind the GRPO profile's notes in bench/README.md, one script, one process:

  draws      one token per row of a [16, 2000] probability matrix: torch.multinomial vs
             loops.inverse_cdf (the same distribution)
  decode     one cached decoding step of the gpt2-tweets policy (16 rows, train mode as TRL samples):
             2-D attention mask (rebuilt into a causal mask every step) vs the boolean
             [batch, 1, 1, keys] mask loops.sample hands SDPA; with 1 and 2 threads
  sampling   16 completions of up to 24 tokens (2 prompts x 8, eval mode): model.generate vs loops.sample;
             in train mode, loops.sample's decoding steps through the model's forward vs through
             decoding.OneTokenDecoder
  reward     the quickstart MiniLM classifier on those 16 prompt + completion texts: one padded
             batch, length-sorted in 2 and 4 batches, bf16 autocast, bf16 weights, the last layer for
             the first token only (families.first_token_last_layer, with its largest change of a
             probability), all 16 packed into one row with a block-diagonal mask (no padding);
             and its forward on random token ids at several batch x length shapes (how the cost
             grows with tokens)

Each comparison runs its variants in interleaved blocks (see `compare`), medians in milliseconds.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/micro_grpo.py [--runs runs] [--threads 2] \
        [--samples bench/results/grpo-sameness-default-42/samples_*.jsonl]

`--runs` holds `gpt2-tweets/` and `quickstart/` (`hf-tuner train gpt2-tweets`, `hf-tuner train quickstart`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compare(variants: dict, blocks: int = 10, per_block: int = 10) -> dict:
    """Median over `blocks` interleaved blocks (the order alternating) of each variant's median time
    in ms over `per_block` calls, after warm-up: the machine's drift hits every variant alike."""
    import statistics

    names = list(variants)
    for fn in variants.values():
        fn()
    found: dict = {name: [] for name in names}
    for block in range(blocks):
        for name in names if block % 2 == 0 else names[::-1]:
            times = []
            for _ in range(per_block):
                start = time.perf_counter()
                variants[name]()
                times.append(time.perf_counter() - start)
            found[name].append(statistics.median(times) * 1000)
    return {name: statistics.median(values) for name, values in found.items()}


def line(title: str, results: dict, digits: int = 1) -> str:
    return f"{title}: " + ", ".join(f"{name} {ms:.{digits}f} ms" for name, ms in results.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", nargs="*", default=[], help="samples_*.jsonl files of GRPO runs: the reward "
                        "variants on their prompt + completion texts as well, 16 at a time")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from hf_tuner.tasks.parts.families import first_token_last_layer
    from hf_tuner.tasks.parts.loops import DECODES, inverse_cdf, sample

    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    torch.manual_seed(0)

    probs = torch.randn(16, 2000).softmax(-1)
    print(line("draws", compare({"multinomial": lambda: torch.multinomial(probs, 1),
                                 "inverse_cdf": lambda: inverse_cdf(probs)}, per_block=50), 3))

    policy = AutoModelForCausalLM.from_pretrained(runs / "gpt2-tweets")
    tokenizer = AutoTokenizer.from_pretrained(runs / "gpt2-tweets")
    eos = [tokenizer.eos_token_id]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    with torch.no_grad():
        policy.train()  # TRL samples with the policy in train mode (dropout on)
        ids = torch.randint(10, 500, (16, 6))
        mask = torch.ones(16, 6, dtype=torch.long)
        mask[:8, :2] = 0
        cache = policy(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1).cache
        token, position = torch.randint(10, 500, (16, 1)), torch.full((16, 1), 6)
        longer = torch.cat([mask, mask.new_ones(16, 1)], -1)
        boolean = longer.bool()[:, None, None, :]

        def step(step_mask, threads=args.threads):
            torch.set_num_threads(threads)
            policy(input_ids=token, attention_mask=step_mask, position_ids=position, use_cache=True, cache=cache)
            cache.crop(-1)

        print(line("decode step", compare({"2-D mask": lambda: step(longer), "boolean 4-D mask": lambda: step(boolean),
                                           "4-D mask, 1 thread": lambda: step(boolean, 1)}, blocks=20, per_block=50), 2))
        torch.set_num_threads(args.threads)

        policy.eval()
        prompts = ["i love", "today is"]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
        ids, mask = enc["input_ids"].repeat_interleave(8, 0), enc["attention_mask"].repeat_interleave(8, 0)
        print(line("sampling 16 x up to 24 tokens", compare({
            "model.generate": lambda: policy.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=24,
                                                      top_k=0, pad_token_id=pad, eos_token_id=eos),
            "loops.sample": lambda: sample(policy, ids, mask, 24, 1.0, eos, pad)}, per_block=5)))
        policy.train()  # as TRL samples: dropout on
        decodes = lambda on: (DECODES.__setitem__(policy, on), sample(policy, ids, mask, 24, 1.0, eos, pad))
        print(line("sampling 16 x up to 24 tokens, train mode", compare({
            "loops.sample, model forward": lambda: decodes(False),
            "loops.sample, OneTokenDecoder": lambda: decodes(True)}, per_block=5)))
        policy.eval()
        out = sample(policy, ids, mask, 24, 1.0, eos, pad)
        texts = [p + tokenizer.decode(o[ids.shape[1]:], skip_special_tokens=True)
                 for p, o in zip([p for p in prompts for _ in range(8)], out)]

    classifier = AutoModelForSequenceClassification.from_pretrained(runs / "quickstart").eval()
    ctok = AutoTokenizer.from_pretrained(runs / "quickstart")

    def by_length(batch: list[str]) -> list[str]:
        sizes = [len(x) for x in ctok(batch)["input_ids"]]
        return [batch[i] for i in sorted(range(len(batch)), key=lambda i: sizes[i])]

    def score(batch: list[str], parts: int = 1, cast=None, trim=False):
        size, out = -(-len(batch) // parts), []
        for start in range(0, len(batch), size):
            enc = ctok(batch[start:start + size], padding=True, return_tensors="pt")
            with torch.autocast("cpu", dtype=cast, enabled=cast is not None), \
                    first_token_last_layer(classifier) if trim else contextlib.nullcontext():
                out.append(classifier(**enc).logits.float().softmax(-1))
        return torch.cat(out)

    def packed(batch: list[str]):
        """The texts in one row, each attending to itself only (a block-diagonal boolean mask, positions
        restarting per text), the classifier head on each text's first token."""
        rows = ctok(batch)["input_ids"]
        sizes = torch.tensor([len(r) for r in rows])
        text_of = torch.repeat_interleave(torch.arange(len(rows)), sizes)
        ids = torch.tensor([t for r in rows for t in r])[None]
        hidden = classifier.bert(input_ids=ids, attention_mask=(text_of[:, None] == text_of[None, :])[None, None],
                                 position_ids=torch.cat([torch.arange(int(n)) for n in sizes])[None],
                                 token_type_ids=torch.zeros_like(ids)).last_hidden_state
        firsts = hidden[0, torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])][:, None]
        return classifier.classifier(classifier.bert.pooler(firsts)).softmax(-1)

    def padding_of(batches: list[list[str]]) -> float:
        sizes = [[len(x) for x in ctok(b)["input_ids"]] for b in batches]
        return 1 - sum(map(sum, sizes)) / sum(len(n) * max(n) for n in sizes)

    with torch.no_grad():
        texts = by_length(texts)
        lengths = [len(x) for x in ctok(texts)["input_ids"]]
        halved = AutoModelForSequenceClassification.from_pretrained(runs / "quickstart", dtype=torch.bfloat16).eval()
        enc = ctok(texts, padding=True, return_tensors="pt")
        print(line(f"reward, 16 texts of {min(lengths)}-{max(lengths)} tokens ({padding_of([texts]):.0%} padding in one batch)", compare({
            "one batch": lambda: score(texts), "2 sorted batches": lambda: score(texts, 2), "4 sorted batches": lambda: score(texts, 4),
            "bf16 autocast": lambda: score(texts, cast=torch.bfloat16), "bf16 weights": lambda: halved(**enc),
            "first-token last layer": lambda: score(texts, trim=True), "packed in one row": lambda: packed(texts)}, per_block=3)))
        for name, fn in (("first-token last layer", lambda: score(texts, trim=True)), ("packed in one row", lambda: packed(texts))):
            print(f"{name}: largest change of a probability {float((fn() - score(texts)).abs().max()):.1e}")
        if args.samples:  # completions as GRPO training draws them: the policy's held-out samples, 16 at a time
            rows = [json.loads(r) for f in args.samples for r in Path(f).read_text().split("\n") if r]
            groups = [[r["prompt"] + r["completion"] for r in rows[i:i + 16]] for i in range(0, len(rows) - 15, 16)]
            print(line(f"reward, {len(groups)} groups of 16 held-out samples ({padding_of(groups):.0%} padding), per group", {
                name: ms / len(groups) for name, ms in compare({
                    "one batch": lambda: [score(g) for g in groups], "first-token last layer": lambda: [score(g, trim=True) for g in groups],
                    "packed in one row": lambda: [packed(g) for g in groups]}, blocks=6, per_block=1).items()}))
        shapes = {}
        for batch, length in [(1, 31), (4, 31), (8, 31), (16, 8), (16, 16), (16, 24), (16, 31), (16, 64)]:
            ids = torch.randint(1000, 20000, (batch, length))
            shapes[f"{batch}x{length}"] = lambda ids=ids: classifier(input_ids=ids, attention_mask=torch.ones_like(ids))
        print(line("reward forward by batch x tokens", compare(shapes, blocks=6, per_block=3)))

if __name__ == "__main__":
    main()
