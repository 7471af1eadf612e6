"""What the training commands do with a run folder: refuse, resume, overwrite, lock;
no duplicate metrics; one line and a saved checkpoint on SIGINT; the command line
recorded; the summary printed (docs/training.md, "Run folders")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from leapformer.cli import invocation, main
from leapformer.data.listops import generate_listops, write_tsv
from leapformer.tasks._skeleton import RunLock, open_run

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("listops")
    for i, name in enumerate(("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")):
        write_tsv(generate_listops(32, seed=i, min_len=5, max_len=20), root / name)
    return root


def _lra(data, out, *extra, steps=3):
    return main(["lra", "--task", "listops", "--attention", "linear", "--data-dir", str(data),
                 "--out", str(out), "--steps", str(steps), "--no-progress", *extra])


def _steps(out, kind="train"):
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in recs if r["kind"] == kind]


def test_overwrite_replaces_and_refusal_keeps_the_run(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _lra(data, out, steps=3) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "{" not in printed  # a summary, not the JSON
    res = json.loads((out / "results.json").read_text())
    assert res["command"].startswith("leapformer lra --task listops --attention linear")
    before = (out / "best.pt").read_bytes()
    assert _lra(data, out, steps=2) == 2  # refused: nothing touched
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "best.pt").read_bytes() == before and _steps(out) == [1, 2, 3]
    assert _lra(data, out, "--overwrite", steps=2) == 0
    assert _steps(out) == [1, 2]  # a fresh metrics.jsonl, not appended to
    assert json.loads((out / "results.json").read_text())["steps"] == 2
    assert not (out / ".lock").exists()


def test_killed_run_is_refused_and_stale_metrics_are_dropped(data, tmp_path, capsys):
    """A run killed after a checkpoint (last.pt, no results) needs --resume; one killed
    before any checkpoint left metrics.jsonl alone: a new run starts it afresh."""
    out = tmp_path / "run"
    assert _lra(data, out, steps=2) == 0
    (out / "results.json").unlink()
    assert _lra(data, out, steps=2) == 2
    assert "already holds a run (last.pt, best.pt)" in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "metrics.jsonl").write_text('{"step": 1, "kind": "train", "loss": 9.0}\n'
                                         '{"step": 2, "kind": "tr')
    assert _lra(data, fresh, steps=2) == 0
    assert _steps(fresh) == [1, 2]
    assert all(r["loss"] != 9.0 for r in map(json.loads, (fresh / "metrics.jsonl")
                                              .read_text().splitlines()))


def test_resume_after_a_kill_has_no_duplicate_steps(data, tmp_path):
    out = tmp_path / "run"
    assert _lra(data, out, steps=2) == 0
    with open(out / "metrics.jsonl", "a") as fh:  # written after the checkpoint, then killed
        fh.write('{"step": 3, "kind": "train", "loss": 1.0}\n{"step": 4, "kind"')
    assert _lra(data, out, "--resume", steps=4) == 0
    assert _steps(out) == [1, 2, 3, 4] and _steps(out, "eval") == [2, 4]


def test_lock_refuses_a_second_process_and_survives_sigkill(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from leapformer.tasks._skeleton import RunLock; "
         "RunLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)",
         str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _lra(data, out, steps=2) == 2
        err = capsys.readouterr().err
        assert f"run folder {out} is in use by another process (pid {holder.pid} on" in err
        assert err.startswith("error: leapformer lra: ") and len(err.splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert (out / ".lock").exists()  # left behind by the killed process, not held
    assert _lra(data, out, steps=2) == 0  # taken over
    assert not (out / ".lock").exists()


def test_open_run_in_process(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(ZeroDivisionError), open_run(out):
        1 / 0
    assert not (tmp_path / "a").exists()  # the folders it made, empty, are gone
    with open_run(out) as folder:
        assert (folder / ".lock").exists()
        with pytest.raises(RuntimeError, match="in use by another process"):
            RunLock(folder).acquire()
        (folder / "last.pt").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"already holds a run \(last.pt\)"):
        with open_run(out):
            pass
    with open_run(out, overwrite=True) as folder:
        assert not (folder / "last.pt").exists()


def test_invocation_reads_leapformer(monkeypatch):
    assert invocation(["lra", "--out", "a b"]) == "leapformer lra --out 'a b'"
    for argv0 in ("/venv/bin/leapformer", "/x/src/leapformer/cli/__main__.py"):
        monkeypatch.setattr(sys, "argv", [argv0, "lm", "train"])
        assert invocation() == "leapformer lm train"
    monkeypatch.setattr(sys, "argv", ["benchmarks/ops.py", "--quick"])
    assert invocation() == "python benchmarks/ops.py --quick"


def test_sigint_saves_last_pt_and_prints_the_resume_command(data, tmp_path):
    """Ctrl-C in a real training process: one line, exit 130, last.pt at that step, and
    the printed command continues the run."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "leapformer.cli", "lra", "--task", "listops", "--attention",
           "linear", "--data-dir", str(data), "--out", str(out), "--steps", "100000",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    step = torch.load(out / "last.pt", weights_only=False)["step"]
    resume = (f"leapformer lra --task listops --attention linear --data-dir {data} --out {out} "
              f"--steps 100000 --no-progress --resume")
    assert lines[0] == (f"leapformer lra: interrupted at step {step}/100000; saved "
                        f"{out / 'last.pt'}; continue with: {resume}")
    assert not (out / ".lock").exists()
    argv = resume.split()[1:]
    argv[argv.index("100000")] = str(step + 1)
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["steps"] == step + 1
