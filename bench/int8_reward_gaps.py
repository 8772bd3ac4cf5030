"""Experiment: how far int8 dynamic quantisation of the quickstart classifier moves its P(positive) on
the grpo_sameness runs' held-out samples (seed 42, default and int8), per group of linear layers, and
its forward time on 16 of them. Run after `bench/grpo_sameness.py --settings int8,default`."""
import json, torch, statistics, time, copy, warnings
warnings.simplefilter("ignore")
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from torch.ao.quantization import quantize_dynamic
torch.set_num_threads(2)
m = AutoModelForSequenceClassification.from_pretrained("runs/quickstart").eval()
tok = AutoTokenizer.from_pretrained("runs/quickstart")
rows = []
for name in ["grpo-sameness-default-42", "grpo-sameness-int8-42"]:
    for phase in ["before", "after"]:
        rows += [json.loads(l) for l in open(f"bench/results/{name}/samples_{phase}.jsonl").read().split("\n") if l]
texts = [r["prompt"] + r["completion"] for r in rows]
enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad(): ref = m(**enc).logits.softmax(-1)[:, 1]
batch = tok(texts[:16], padding=True, return_tensors="pt")
def timeit(model):
    with torch.no_grad():
        for _ in range(3): model(**batch)
        r = []
        for _ in range(20):
            s = time.perf_counter(); model(**batch); r.append(time.perf_counter() - s)
    return statistics.median(r) * 1000
names = {n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)}
groups = {
 "all": names,
 "attn qkv+o": {n for n in names if ".attention." in n},
 "ffn in": {n for n in names if n.endswith("intermediate.dense")},
 "ffn out": {n for n in names if n.endswith("output.dense") and ".attention." not in n},
 "ffn both": {n for n in names if "intermediate.dense" in n or (n.endswith("output.dense") and ".attention." not in n)},
 "all but ffn out": names - {n for n in names if n.endswith("output.dense") and ".attention." not in n},
 "all but head": {n for n in names if n.startswith("bert.encoder")},
}
print("fp32", round(timeit(m), 1))
for g, sel in groups.items():
    q = quantize_dynamic(copy.deepcopy(m), sel, dtype=torch.qint8)
    with torch.no_grad(): out = q(**enc).logits.softmax(-1)[:, 1]
    d = (out - ref).abs()
    print(f"{g:18s} {len(sel):3d} layers  max|d| {d.max():.3f}  mean|d| {d.mean():.4f}  >0.05: {(d>0.05).sum().item()}/{len(d)}  ms {timeit(q):.1f}")
