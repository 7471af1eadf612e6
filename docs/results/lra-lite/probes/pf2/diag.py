"""Cheap learnability diagnostics on the lite Pathfinder stand-in (1 thread)."""
import sys, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1); torch.manual_seed(0)
d = np.load(sys.argv[1] if len(sys.argv) > 1 else "/tmp/pf_lite.npz")
S = d["train_x"].shape[1]
def feats(x):
    x = torch.tensor(x).reshape(len(x), -1)
    return torch.cat([(x == 128).float(), (x == 255).float()], 1)
Xtr, Ytr = feats(d["train_x"]), torch.tensor(d["train_y"]); Xte, Yte = feats(d["test_x"]), torch.tensor(d["test_y"])
def fit(model, Xtr, Xte, steps=3000, lr=1e-3, bs=64, wd=0.0, name=""):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd); t = time.time(); g = torch.Generator().manual_seed(0)
    for s in range(1, steps + 1):
        i = torch.randint(0, len(Ytr), (bs,), generator=g)
        loss = F.cross_entropy(model(Xtr[i]), Ytr[i]); opt.zero_grad(); loss.backward(); opt.step()
        if s % (steps // 4) == 0:
            model.eval()
            with torch.no_grad(): lo = model(Xte); acc = (lo.argmax(-1) == Yte).float().mean().item()
            trl = F.cross_entropy(model(Xtr[:2000]), Ytr[:2000]).item(); model.train()
            print(f"{name} step {s} train_loss {trl:.3f} test_loss {F.cross_entropy(lo, Yte).item():.3f} test_acc {acc*100:.1f} {time.time()-t:.0f}s", flush=True)
# marker distance reference
m = d["test_m"]; dist = np.hypot(*(m[:, 0] - m[:, 1]).T); mtr = d["train_m"]; dtr = np.hypot(*(mtr[:, 0] - mtr[:, 1]).T)
best = max((((dtr < t) == d["train_y"]).mean(), t) for t in np.arange(1, 16, 0.25)); print("distance threshold train", best, "test", ((dist < best[1]) == d["test_y"]).mean())
print("label-1 dist mean", dtr[d["train_y"] == 1].mean(), "label-0", dtr[d["train_y"] == 0].mean())
fit(nn.Linear(S * S, 2), Xtr[:, :S * S], Xte[:, :S * S], name="logreg-marker-pixels")
fit(nn.Linear(2 * S * S, 2), Xtr, Xte, name="logreg-all")
fit(nn.Sequential(nn.Linear(2 * S * S, 256), nn.ReLU(), nn.Linear(256, 2)), Xtr, Xte, name="mlp256")
class CNN(nn.Module):
    def __init__(s):
        super().__init__(); c = 32
        s.f = nn.Sequential(nn.Conv2d(2, c, 3, padding=1), nn.ReLU(), *[m for _ in range(5) for m in (nn.Conv2d(c, c, 3, padding=1), nn.ReLU())])
        s.h = nn.Linear(c, 2)
    def forward(s, x): return s.h(s.f(x.reshape(len(x), 2, S, S)).amax((2, 3)))
fit(CNN(), Xtr, Xte, steps=2000, name="cnn6")
