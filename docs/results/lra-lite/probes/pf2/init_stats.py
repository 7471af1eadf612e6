"""At initialisation: how much do the pooled features (and the head's hidden units) vary
across images, relative to their image-independent part? lite model, lite tokens."""
import numpy as np, torch
torch.set_num_threads(1); torch.manual_seed(0)
from leapformer.models.classifier import ClassifierConfig, SequenceClassifier
d = np.load("/tmp/pf_lite.npz")
x = torch.tensor(d["train_x"][:512]).reshape(512, -1).long()
for name, tok, init_std in [("lite (value+1), N(0,1) emb", x + 1, None), ("lite, init_std 0.02", x + 1, 0.02),
                            ("background = pad", torch.where(x == 0, 0, x + 1), None)]:
    torch.manual_seed(0)
    m = SequenceClassifier(ClassifierConfig(vocab_size=257, num_classes=2, max_length=1024, init_std=init_std)).eval()
    with torch.no_grad():
        z = m.encoder(tok); h = m.head[0](z); lo = m(tok)
        emb = m.encoder.embed(tok) + m.encoder.pos.weight[:256]
        layer_in = m.encoder.encoder.layers[0]
    ratio = lambda t: (t.std(0).norm() / t.mean(0).norm()).item()
    on = (h > 0).float().mean(0)
    print(f"{name}: pooled |std across images| / |mean| = {ratio(z):.3f}; head hidden units on for all/none of the "
          f"images: {((on == 1) | (on == 0)).float().mean().item()*100:.0f}%; logit-difference std {(lo[:,1]-lo[:,0]).std().item():.4f}; "
          f"token-embedding norm {emb.norm(dim=-1).mean().item():.2f}")
