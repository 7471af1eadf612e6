"""``benchmarks/gpu.py --dry-run``: the GPU benchmark end to end on CPU (Triton
interpreter, tiny shapes), in a subprocess so that ``TRITON_INTERPRET`` is set before
the kernels are defined. Checks the files and their rows, not the times."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--lengths", "40",
                           "--out-dir", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads((out / "gpu-cpu-dry-run.json").read_text())


def test_every_pass_and_method_has_a_cell(result):
    _, data = result
    cells = {(r["N"], r["pass"], r["method"]) for r in data["rows"]}
    for N in (40,):
        for pass_ in ("fwd", "fwd+bwd", "bidir-fwd", "decode"):
            for method in ("leap-triton", "leap-torch-chunk", "fla-chunk-expanded", "sdpa-flash"):
                assert (N, pass_, method) in cells
    timed = [r for r in data["rows"] if r["method"] in ("leap-triton", "sdpa-flash")]
    assert timed and all(r["ms"] is not None and r["ms"] > 0 for r in timed)
    fla = [r for r in data["rows"] if r["method"] == "fla-chunk-expanded"]
    assert all(r["ms"] is None and r["error"] for r in fla)  # FLA's kernels need CUDA
    gated = {r["pass"]: r for r in data["rows"] if r["method"] == "gated-leap-triton"}
    assert all(gated[p]["ms"] > 0 for p in ("fwd", "fwd+bwd", "decode"))
    assert gated["bidir-fwd"]["error"] == "causal only"


def test_markdown_says_it_is_a_dry_run(result):
    out, _ = result
    text = (out / "gpu-cpu-dry-run.md").read_text()
    assert "Dry run on CPU" in text
    for pass_ in ("fwd", "fwd+bwd", "bidir-fwd", "decode"):
        assert f"## {pass_}" in text
    assert "| 16 | 40 |" in text  # d 16, N 40


def test_bad_length_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--lengths", "4x",
                           "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "length must be like" in proc.stderr


def test_compile_check_builds_a_cubin_without_a_gpu():
    """``--compile-check``: the compiled (not interpreted) kernels go through Triton's
    CUDA backend to a cubin here, with their shared memory under sm_90's limit (the
    bidirectional gradient kernel and the gated backward, the largest gated kernel)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--compile-check", "--dims", "16",
                           "--kernels", "grad", "gated-bwd", "--compile-dtype", "fp32"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for kernel in ("grad", "gated-bwd"):
        row = next(line for line in proc.stdout.splitlines()
                   if line.startswith(f"| {kernel} | 16 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[4]) > 0 and cells[6] == "yes"
