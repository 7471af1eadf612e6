"""Which pixels carry the signal: CNN / MLP on marker-only or stroke-only channels."""
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F, time
torch.set_num_threads(1); torch.manual_seed(0)
d = np.load("/tmp/pf_lite.npz"); S = 16
def feats(x):
    x = torch.tensor(x).reshape(len(x), -1); return torch.stack([(x == 128).float(), (x == 255).float()], 1)
Xtr, Ytr = feats(d["train_x"]), torch.tensor(d["train_y"]); Xte, Yte = feats(d["test_x"]), torch.tensor(d["test_y"])
class CNN(nn.Module):
    def __init__(s, cin):
        super().__init__(); c = 32
        s.f = nn.Sequential(nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(), *[m for _ in range(5) for m in (nn.Conv2d(c, c, 3, padding=1), nn.ReLU())]); s.h = nn.Linear(c, 2)
    def forward(s, x): return s.h(s.f(x.reshape(len(x), -1, S, S)).amax((2, 3)))
def fit(model, ch, steps, name):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0); g = torch.Generator().manual_seed(0); t = time.time()
    for s in range(1, steps + 1):
        i = torch.randint(0, len(Ytr), (64,), generator=g)
        loss = F.cross_entropy(model(Xtr[i][:, ch]), Ytr[i]); opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad(): acc = (model(Xte[:, ch]).argmax(-1) == Yte).float().mean().item()
    print(name, steps, "test_acc", round(acc * 100, 1), f"{time.time()-t:.0f}s", flush=True)
fit(nn.Sequential(nn.Flatten(), nn.Linear(S * S, 256), nn.ReLU(), nn.Linear(256, 2)), [0], 3000, "mlp marker-only")
fit(nn.Sequential(nn.Flatten(), nn.Linear(S * S, 256), nn.ReLU(), nn.Linear(256, 2)), [1], 3000, "mlp stroke-only")
fit(CNN(1), [0], 600, "cnn marker-only")
fit(CNN(1), [1], 600, "cnn stroke-only")
