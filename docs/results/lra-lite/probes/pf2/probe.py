"""pf2 probe: the lite Pathfinder loop (AdamW, warm-up 50, linear decay, clip 1, batch 32)
on data dumped by make_data.py, with the library's SequenceClassifier and a few switches.

usage: probe.py DATA.npz key=value ...  (keys below); stops when the running loss is
still >= stop_loss at step stop_at."""
import sys, time, math, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
from leapformer.models.classifier import ClassifierConfig, SequenceClassifier
a = dict(lr=2e-3, steps=1000, bs=32, warm=50, wd=0.01, n_train=25000, pooling="mean", dropout=0.1,
         init_std=None, d_model=64, tok="level", stop_at=300, stop_loss=0.685, eval_every=100, seed=0,
         pos2d=0, beta2=0.98, layers=2, pool="lib")
for kv in sys.argv[2:]:
    k, v = kv.split("="); a[k] = type(a[k])(v) if a[k] is not None else float(v)
print(a, flush=True)
d = np.load(sys.argv[1]); S = d["train_x"].shape[1]
def tokens(x):
    x = torch.tensor(x).reshape(len(x), -1).long()
    lvl = (x == 128).long() + 2 * (x == 255).long()        # 0 bg, 1 marker, 2 stroke
    if a["tok"] == "level": return x + 1                     # the lite ids (value + 1)
    if a["tok"] == "sparse": return torch.where(x == 0, 0, x + 1)   # background = padding id 0 (masked)
    if a["tok"] == "poscode-sparse": return torch.where(lvl == 0, 0, 1 + lvl * S * S + torch.arange(S * S))
    if a["tok"] == "poscode": return 1 + lvl * S * S + torch.arange(S * S)   # id = (level, position)
    raise ValueError(a["tok"])
n = a["n_train"]
Xtr, Ytr = tokens(d["train_x"][:n]), torch.tensor(d["train_y"][:n])
Xva, Yva = tokens(d["valid_x"]), torch.tensor(d["valid_y"]); Xte, Yte = tokens(d["test_x"]), torch.tensor(d["test_y"])
vocab = int(max(Xtr.max(), Xva.max(), Xte.max())) + 1
torch.manual_seed(a["seed"])
cfg = ClassifierConfig(vocab_size=max(vocab, 257), num_classes=2, max_length=max(S * S + 1, 1024) if a["pooling"] != "cls" else 1024,
                       d_model=a["d_model"], dim_feedforward=2 * a["d_model"], num_layers=a["layers"],
                       pooling=a["pooling"], dropout=a["dropout"], init_std=a["init_std"])
m = SequenceClassifier(cfg)
if a["pool"] != "lib":   # pooling variants the library lacks: encoder output pooled here
    enc = m.encoder
    norm = nn.BatchNorm1d(cfg.d_model) if "bn" in a["pool"] else nn.Identity(); m.pnorm = norm
    def enc_fwd(tokens, key_padding_mask=None):
        x = enc.embed(tokens) + enc.pos.weight[:tokens.shape[1]]
        pad = tokens == 0
        x = enc.encoder(enc.dropout(x), key_padding_mask=pad)
        z = x.masked_fill(pad[..., None], -1e4).amax(1) if a["pool"].startswith("max") else x.mean(1)
        return norm(z)
    enc.forward = enc_fwd
if a["pos2d"]:
    r, c = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij"); k = cfg.d_model // 4
    f = torch.exp(torch.linspace(math.log(0.2), math.log(2.0), k))   # periods ~3 to ~31 px
    pe = torch.cat([torch.sin(r.flatten()[:, None] * f), torch.cos(r.flatten()[:, None] * f),
                    torch.sin(c.flatten()[:, None] * f), torch.cos(c.flatten()[:, None] * f)], -1)
    off = 1 if a["pooling"] == "cls" else 0   # the library puts CLS at position 0
    with torch.no_grad(): m.encoder.pos.weight[off:off + S * S] = pe * a["pos2d"]
opt = torch.optim.AdamW(m.parameters(), lr=a["lr"], weight_decay=a["wd"], betas=(0.9, a["beta2"]))
steps, warm = a["steps"], a["warm"]
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: (i + 1) / warm if i < warm else max(0.0, (steps - i) / (steps - warm)))
g = torch.Generator().manual_seed(a["seed"])
@torch.no_grad()
def ev(X, Y):
    m.eval(); lo = torch.cat([m(X[i:i + 250]) for i in range(0, len(X), 250)]); m.train()
    return (lo.argmax(-1) == Y).float().mean().item() * 100, F.cross_entropy(lo, Y).item()
t0 = time.time(); run = 0.0; best = (-1, 0, None)
for step in range(1, steps + 1):
    idx = torch.randint(0, len(Ytr), (a["bs"],), generator=g)
    loss = F.cross_entropy(m(Xtr[idx]), Ytr[idx])
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
    run = 0.95 * run + 0.05 * loss.item(); rl = run / (1 - 0.95 ** step)
    if step % a["eval_every"] == 0 or step == steps:
        va, vl = ev(Xva, Yva)
        if va > best[0]: best = (va, step, {k: v.clone() for k, v in m.state_dict().items()})
        print(f"step {step} train_loss {rl:.3f} valid_acc {va:.1f} valid_loss {vl:.3f} {time.time() - t0:.0f}s", flush=True)
    if step == a["stop_at"] and rl >= a["stop_loss"]:
        print("stopped: loss still", round(rl, 3)); break
if best[2] is not None:
    m.load_state_dict(best[2]); te, tl = ev(Xte, Yte)
    print(f"best valid {best[0]:.1f} at step {best[1]}; test_acc {te:.1f} test_loss {tl:.3f}; {time.time() - t0:.0f}s", flush=True)
