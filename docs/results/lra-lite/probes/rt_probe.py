"""Probe: Retrieval 'shifted' pairs, dual encoder with variants of the comparison head."""
import sys, time, dataclasses, math
import torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
from leapformer.tasks.lra.sets import retrieval as R
from leapformer.data.bytes import VOCAB_SIZE, encode_bytes
from leapformer.tasks.lra.batching import pad
from leapformer.models.classifier import ClassifierConfig, SequenceEncoder
variant, stand_in, lr, steps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
attention = sys.argv[5] if len(sys.argv) > 5 else "softmax"
p = dataclasses.replace(R.PROFILES["lite"], stand_in=None if stand_in == "book" else stand_in,
                        n_train=20000, n_valid=500, n_test=10)
t0 = time.time(); pairs = R.book_pairs(p, 0); print("data", round(time.time()-t0), "s", flush=True)
def enc(split):
    f, s, y = pairs[split]
    return ([encode_bytes(x.text, 256) for x in f], [encode_bytes(x.text, 256) for x in s], torch.tensor(y))
tr, va = enc("train"), enc("valid")
torch.manual_seed(0)
cfg = ClassifierConfig(vocab_size=VOCAB_SIZE, num_classes=2, max_length=256, attention=attention, init_std=0.02)
class M(nn.Module):
    def __init__(s):
        super().__init__(); s.e = SequenceEncoder(cfg); d = cfg.d_model
        s.norm = nn.BatchNorm1d(4 * d) if variant in ("bn", "bnabs") else nn.Identity()
        s.head = nn.Sequential(nn.Linear(4 * d, 128), nn.ReLU(), nn.Linear(128, 2))
    def forward(s, a, b):
        u, v = s.e(a), s.e(b)
        d = (u - v).abs() if variant in ("abs", "bnabs") else u - v
        return s.head(s.norm(torch.cat((u, v, u * v, d), -1)))
m = M(); opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1, (i+1)/50) * max(0.0, 1 - i/steps))
g = torch.Generator().manual_seed(0)
def evaluate():
    m.eval(); c = 0
    with torch.no_grad():
        for i in range(0, 500, 100):
            c += (m(pad(va[0][i:i+100], 256), pad(va[1][i:i+100], 256)).argmax(-1) == va[2][i:i+100]).sum().item()
    m.train(); return c / 5
t0 = time.time(); run = 0.0
for step in range(1, steps + 1):
    idx = torch.randint(0, 20000, (16,), generator=g).tolist()
    loss = F.cross_entropy(m(pad([tr[0][i] for i in idx], 256), pad([tr[1][i] for i in idx], 256)), tr[2][idx])
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
    run = 0.98 * run + 0.02 * loss.item()
    if step % 100 == 0:
        print(f"{variant} {stand_in} lr{lr} step {step} loss {run/(1-0.98**step):.3f} valid {evaluate():.1f} {time.time()-t0:.0f}s", flush=True)
