"""Dump the lite Pathfinder splits (three levels) + marker info to an npz for fast probes."""
import sys, time, numpy as np
from leapformer.tasks.lra.sets import pathfinder as P
from leapformer.data.pathfinder import generate_pathfinder
out = sys.argv[1]; kw = dict(P.GEOMETRY[16])
for a in sys.argv[2:]:
    k, v = a.split("="); kw[k] = type(P.GEOMETRY[16].get(k, 1.0))(float(v)) if k != "num_distractors" and k != "contour_length" and k != "distractor_length" else int(v)
size = kw.pop("size", 16)
d = {}
for i, (k, n) in enumerate({"train": 25000, "valid": 1000, "test": 1000}.items()):
    t = time.time()
    ims, y, info = generate_pathfinder(n, seed=i, size=size, return_info=True, **kw)
    d[k + "_raw"] = ims; d[k + "_x"] = P.three_levels(ims, info.markers); d[k + "_y"] = y
    d[k + "_m"] = info.markers; d[k + "_ends"] = info.snake_ends
    print(k, n, round(time.time() - t, 1), "s", flush=True)
np.savez_compressed(out, **d)
