"""Probe: Pathfinder lite (16x16, three levels) with position-embedding variants."""
import sys, time, math
import torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
from leapformer.tasks.lra.sets import pathfinder as P
from leapformer.tasks.lra.batching import pad
from leapformer.models.classifier import ClassifierConfig, SequenceEncoder
variant, lr, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
attention = sys.argv[4] if len(sys.argv) > 4 else "softmax"
t0 = time.time(); data = P.load(P.PROFILES["lite"], None, 0); print("data", round(time.time()-t0), "s", flush=True)
tr, va = data.splits["train"], data.splits["valid"]
Xtr, Ytr = torch.tensor(tr.tokens), torch.tensor(tr.labels); Xva, Yva = torch.tensor(va.tokens), torch.tensor(va.labels)
torch.manual_seed(0)
cfg = ClassifierConfig(vocab_size=data.vocab_size, num_classes=2, max_length=257, attention=attention, init_std=0.02,
                       pooling="cls" if "cls" in variant else "mean", dropout=0.0 if "nodrop" in variant else 0.1)
S = 16
def sincos2d(d):
    r, c = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    k = d // 4; f = torch.exp(-math.log(100.0) * torch.arange(k) / k)
    parts = [torch.sin(r.flatten()[:, None] * f), torch.cos(r.flatten()[:, None] * f),
             torch.sin(c.flatten()[:, None] * f), torch.cos(c.flatten()[:, None] * f)]
    return torch.cat(parts, -1)
class M(nn.Module):
    def __init__(s):
        super().__init__(); s.e = SequenceEncoder(cfg)
        if variant.startswith("2d"):
            with torch.no_grad(): s.e.pos.weight[:S*S] = sincos2d(cfg.d_model)
            if "fixed" in variant: s.e.pos.weight.requires_grad_(False)
        s.norm = nn.BatchNorm1d(cfg.d_model) if "bn" in variant else nn.Identity()
        s.head = nn.Sequential(nn.Linear(cfg.d_model, 128), nn.ReLU(), nn.Linear(128, 2))
    def forward(s, x): return s.head(s.norm(s.e(x)))
m = M(); opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=lr, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1, (i+1)/50) * max(0.0, 1 - i/steps))
g = torch.Generator().manual_seed(0)
def evaluate():
    m.eval()
    with torch.no_grad(): acc = (m(Xva[:500]).argmax(-1) == Yva[:500]).float().mean().item() * 100
    m.train(); return acc
t0 = time.time(); run = 0.0
for step in range(1, steps + 1):
    idx = torch.randint(0, len(Ytr), (32,), generator=g)
    loss = F.cross_entropy(m(Xtr[idx]), Ytr[idx])
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
    run = 0.98 * run + 0.02 * loss.item()
    if step % 100 == 0:
        print(f"{variant} lr{lr} step {step} loss {run/(1-0.98**step):.3f} valid {evaluate():.1f} {time.time()-t0:.0f}s", flush=True)
