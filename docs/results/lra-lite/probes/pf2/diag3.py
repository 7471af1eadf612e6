"""Can the head path solve it? one-hot pixels -> linear 64 (learned, no bias) -> [BN] -> MLP 64 -> 2,
with / without a large constant offset added to the 64-d 'pooled' vector (what mean pooling gives)."""
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F, time
torch.set_num_threads(1); torch.manual_seed(0)
d = np.load("/tmp/pf_lite.npz"); S = 16
def feats(x):
    x = torch.tensor(x).reshape(len(x), -1); return torch.cat([(x == 128).float(), (x == 255).float()], 1)
Xtr, Ytr = feats(d["train_x"]), torch.tensor(d["train_y"]); Xte, Yte = feats(d["test_x"]), torch.tensor(d["test_y"])
class Net(nn.Module):
    def __init__(s, bn, offset, scale):
        super().__init__(); s.p = nn.Linear(512, 64, bias=False); nn.init.normal_(s.p.weight, std=scale)
        s.c = nn.Parameter(torch.randn(64) * offset, requires_grad=False); s.bn = nn.BatchNorm1d(64) if bn else nn.Identity()
        s.h = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    def forward(s, x): return s.h(s.bn(s.p(x) + s.c))
for bn, off, scale in [(0, 0, 1.0), (0, 0.7, 0.043), (1, 0.7, 0.043), (0, 0.7, 1.0)]:
    m = Net(bn, off, scale); opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.01); g = torch.Generator().manual_seed(0); t = time.time(); out = []
    for s in range(1, 1001):
        i = torch.randint(0, len(Ytr), (32,), generator=g)
        loss = F.cross_entropy(m(Xtr[i]), Ytr[i]); opt.zero_grad(); loss.backward(); opt.step()
        if s % 250 == 0:
            m.eval()
            with torch.no_grad(): out.append(round((m(Xte).argmax(-1) == Yte).float().mean().item() * 100, 1))
            m.train()
    print(f"bn={bn} offset={off} proj_std={scale}: test acc at 250/500/750/1000 steps (batch 32) {out} {time.time()-t:.0f}s", flush=True)
