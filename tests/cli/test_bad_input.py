"""Bad input to every command ends as one line, ``error: leapformer <command>: ...``, with
exit code 2 and no traceback, and leaves no empty run folder behind.

Table-driven: a new case (or a new command) joins by adding a row to ``CASES``:
``(id, argv, command, fragment of the message, folder that must not exist after)``.
``{root}`` in the argv and the folder is the module's scratch folder (``world``),
which holds tiny official ListOps files, malformed variants and a finished run.
"""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from leapformer.cli import main
from leapformer.data.listops import generate_listops, write_tsv

pytestmark = pytest.mark.usefixtures("one_thread")

LISTOPS = ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")
LRA = ["lra", "--task", "listops", "--attention", "leap", "--no-progress", "--steps", "2"]
RUN = "{root}/grid/listops-leap"  # a finished LRA run (pair folder of a grid)
WORDS = "in the beginning god created the heavens and the earth".split()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    data = root / "data"
    for i, name in enumerate(LISTOPS):
        write_tsv(generate_listops(24, seed=i, min_len=5, max_len=20), data / name)
    bad = root / "bad-line"  # a malformed validation file
    shutil.copytree(data, bad)
    with open(bad / "basic_val.tsv", "a") as fh:
        fh.write("[MAX 1 2 ]\tx\n")
    header = root / "header-only"
    shutil.copytree(data, header)
    (header / "basic_train.tsv").write_text("Source\tTarget\n")
    missing = root / "missing-file"
    shutil.copytree(data, missing)
    (missing / "basic_test.tsv").unlink()
    (root / "a-file").write_text("not a folder\n")
    (root / "empty").mkdir()
    (root / "broken-results" / "r").mkdir(parents=True)
    (root / "broken-results" / "r" / "results.json").write_text("{not json")
    (root / "speed.json").write_text("[1, 2]")
    wiki = root / "wiki"
    wiki.mkdir()
    for split, n in (("train", 60), ("valid", 8), ("test", 8)):
        lines = [" " + " ".join(WORDS[(i + j) % 10] for j in range(7)) for i in range(n)]
        (wiki / f"wiki.{split}.tokens").write_text("\n".join(lines) + "\n")
    run = RUN.format(root=root)
    assert main([*LRA, "--data-dir", str(data), "--out", run]) == 0
    truncated = root / "truncated"
    shutil.copytree(run, truncated)
    raw = (truncated / "last.pt").read_bytes()
    (truncated / "last.pt").write_bytes(raw[: len(raw) // 3])
    import torch

    torch.save({"meta": {"task": "lm"}, "model": {}}, root / "not-listops.pt")
    return root


def _lra(*extra, data="data", attention="leap", steps="2"):
    return ["lra", "--task", "listops", "--attention", attention, "--no-progress", "--steps",
            steps, "--data-dir", f"{{root}}/{data}", *extra]


TINY_LM = ["--data", "{root}/wiki", "--steps", "1", "--context", "8", "--batch-size", "2",
           "--no-progress", "--model-option", "num_layers=1", "--model-option", "d_model=16",
           "--model-option", "nhead=2", "--model-option", "dim_feedforward=32"]

CASES = [
    # -- mqar and demo
    ("data-mqar-odd-length", ["data", "mqar", "--n", "4", "--seq-len", "63", "--num-kv", "4",
                              "--vocab", "128", "--out", "{root}/m.npz"], "data mqar",
     "seq_len must be even", None),
    ("mqar-too-many-pairs", ["mqar", "--attention", "leap", "--d-model", "16", "--seq-len", "16",
                             "--num-kv", "8", "--vocab", "64", "--out", "{root}/q1"], "mqar",
     "4 * num_kv", "{root}/q1"),
    ("mqar-vocab-too-small", ["mqar", "--attention", "leap", "--d-model", "16", "--seq-len", "64",
                              "--num-kv", "4", "--vocab", "32", "--out", "{root}/q2"], "mqar",
     "vocab", "{root}/q2"),
    ("demo-non-causal-mechanism", ["demo", "--mechanisms", "nystromformer", "--out", "{root}/d1"],
     "demo", "causal registered mechanisms", "{root}/d1"),
    # -- lra: data
    ("lra-bad-tsv-line", _lra("--out", "{root}/o1", data="bad-line"), "lra",
     "basic_val.tsv:26: Target must be an integer 0-9", "{root}/o1"),
    ("lra-missing-data-dir", _lra("--out", "{root}/o2", data="nope"), "lra",
     "--data-dir {root}/nope does not exist", "{root}/o2"),
    ("lra-data-dir-is-a-file", _lra("--out", "{root}/o3", data="a-file"), "lra",
     "is a file, not a folder", "{root}/o3"),
    ("lra-header-only-tsv", _lra("--out", "{root}/o4", data="header-only"), "lra",
     "header-only/basic_train.tsv: no examples", "{root}/o4"),
    ("lra-missing-tsv-file", _lra("--out", "{root}/o5", data="missing-file"), "lra",
     "missing-file/basic_test.tsv not found", "{root}/o5"),
    ("lra-seed-negative", _lra("--out", "{root}/o6", "--seed", "-1"), "lra",
     "a seed must be >= 0, got -1", "{root}/o6"),
    # -- lra: run folders
    ("lra-truncated-last-pt", _lra("--out", "{root}/truncated", "--resume"), "lra",
     "could not read checkpoint {root}/truncated/last.pt: it is truncated", None),
    ("lra-resume-without-checkpoint", _lra("--out", "{root}/o7", "--resume"), "lra",
     "cannot resume: no checkpoint {root}/o7/last.pt", "{root}/o7"),
    ("lra-out-under-a-file", _lra("--out", "{root}/a-file/run"), "lra",
     "{root}/a-file is a file", None),
    ("lra-out-is-a-file", _lra("--out", "{root}/a-file"), "lra",
     "run folder {root}/a-file is a file", None),
    ("lra-finished-run", _lra("--out", RUN), "lra", "already holds a run (finished", None),
    ("lra-resume-other-mechanism", _lra("--out", RUN, "--resume", attention="linear"), "lra",
     "settings differ from the saved ones in attention", None),
    ("lra-resume-other-profile", _lra("--out", RUN, "--resume", "--profile", "paper"), "lra",
     "differ from the saved ones in profile", None),
    ("lra-resume-other-seed", _lra("--out", RUN, "--resume", "--seed", "3"), "lra",
     "seed: saved 0, now 3", None),
    ("lra-resume-fewer-steps", _lra("--out", RUN, "--resume", steps="1"), "lra",
     "it is at step 2, beyond steps=1", None),
    ("lra-resume-and-overwrite", _lra("--out", RUN, "--resume", "--overwrite"), "lra",
     "resume and overwrite exclude each other", None),
    ("lra-checkpoint-seconds-negative", _lra("--out", "{root}/o9", "--checkpoint-seconds",
                                             "-1"), "lra",
     "argument --checkpoint-seconds: must be >= 0, got -1", "{root}/o9"),
    ("lra-unknown-option", _lra("--out", "{root}/o8", "--colour", "red"), "lra",
     "unrecognized arguments: --colour red (see 'leapformer lra --help')", "{root}/o8"),
    # -- lra-grid
    ("grid-data-dir-no-equals", ["lra-grid", "--mechanisms", "leap", "--data-dir", "listops",
                                 "--out", "{root}/g1"], "lra-grid", "TASK=DIR", "{root}/g1"),
    ("grid-data-dir-missing", ["lra-grid", "--mechanisms", "leap", "--data-dir",
                               "listops={root}/nope", "--out", "{root}/g2"], "lra-grid",
     "--data-dir {root}/nope does not exist", "{root}/g2"),
    ("grid-data-dir-other-task", ["lra-grid", "--mechanisms", "leap", "--data-dir",
                                  "text={root}/data", "--out", "{root}/g3"], "lra-grid",
     "names tasks ['text'] that are not in the grid's tasks", "{root}/g3"),
    ("grid-bad-tsv", ["lra-grid", "--mechanisms", "leap", "--steps", "1", "--no-progress",
                      "--data-dir", "listops={root}/bad-line", "--out", "{root}/g4"],
     "lra-grid", "basic_val.tsv:26:", "{root}/g4"),
    ("grid-unknown-mechanism", ["lra-grid", "--mechanisms", "magic", "--out", "{root}/g5"],
     "lra-grid", "unknown mechanisms ['magic']", "{root}/g5"),
    ("grid-speed-not-an-object", ["lra-grid", "--mechanisms", "leap", "--speed",
                                  "{root}/speed.json", "--out", "{root}/g6"], "lra-grid",
     "--speed {root}/speed.json: expected a JSON object", "{root}/g6"),
    ("grid-other-settings", ["lra-grid", "--mechanisms", "leap", "--steps", "2", "--seed", "5",
                             "--data-dir", "listops={root}/data", "--out", "{root}/grid"],
     "lra-grid", "holds a run with other settings (differing: seed)", None),
    ("grid-seed-negative", ["lra-grid", "--mechanisms", "leap", "--seed", "-2", "--out",
                            "{root}/g7"], "lra-grid", "a seed must be >= 0", "{root}/g7"),
    # -- lra-report
    ("report-missing-runs", ["lra-report", "--runs", "{root}/nope"], "lra-report",
     "run folder {root}/nope does not exist", None),
    ("report-no-results", ["lra-report", "--runs", "{root}/empty"], "lra-report",
     "no LRA results.json under", None),
    ("report-broken-results", ["lra-report", "--runs", "{root}/broken-results"], "lra-report",
     "could not read {root}/broken-results/r/results.json", None),
    ("report-out-under-a-file", ["lra-report", "--runs", "{root}/grid", "--out",
                                 "{root}/a-file/report.md"], "lra-report",
     "--out {root}/a-file/report.md: {root}/a-file is a file", None),
    ("report-figure-is-a-folder", ["lra-report", "--runs", "{root}/grid", "--figure",
                                   "{root}/empty"], "lra-report",
     "--figure {root}/empty is a folder", None),
    ("report-speed-missing", ["lra-report", "--runs", "{root}/grid", "--speed",
                              "{root}/nope.json"], "lra-report",
     "--speed {root}/nope.json: No such file", None),
    # -- heatmap
    ("heatmap-truncated-checkpoint", ["heatmap", "--checkpoint", "{root}/truncated/last.pt",
                                      "--out", "{root}/h.png"], "heatmap",
     "could not read checkpoint {root}/truncated/last.pt: it is truncated", None),
    ("heatmap-index-negative", ["heatmap", "--checkpoint", RUN + "/best.pt", "--index", "-1",
                                "--out", "{root}/h.png"], "heatmap",
     "argument --index: must be >= 0", None),
    ("heatmap-index-past-the-file", ["heatmap", "--checkpoint", RUN + "/best.pt", "--tsv",
                                     "{root}/data/basic_val.tsv", "--index", "99", "--out",
                                     "{root}/h.png"], "heatmap",
     "--index 99 but {root}/data/basic_val.tsv has 24 examples", None),
    ("heatmap-missing-checkpoint", ["heatmap", "--checkpoint", "{root}/nope.pt", "--out",
                                    "{root}/h.png"], "heatmap",
     "checkpoint {root}/nope.pt does not exist", None),
    ("heatmap-not-listops", ["heatmap", "--checkpoint", "{root}/not-listops.pt", "--out",
                             "{root}/h.png"], "heatmap",
     "is not a checkpoint of an LRA ListOps run", None),
    ("heatmap-out-under-a-file", ["heatmap", "--checkpoint", RUN + "/best.pt", "--out",
                                  "{root}/a-file/h.png"], "heatmap",
     "--out {root}/a-file/h.png: {root}/a-file is a file", None),
    # -- lm
    ("lm-mechanism-option-not-a-number", ["lm", "train", "--attention", "leap", "--out",
                                          "{root}/l1", "--mechanism-option", "step_down=abc",
                                          *TINY_LM], "lm train",
     "bad options for mechanism 'leap': step_down must be a positive int, got 'abc'", None),
    ("lm-mechanism-option-float-for-int", ["lm", "train", "--attention", "leap", "--out",
                                           "{root}/l4", "--mechanism-option", "hidden=2.5",
                                           *TINY_LM], "lm train",
     "hidden must be a positive int or None, got 2.5", None),
    ("lm-mechanism-option-performer", ["lm", "train", "--attention", "performer", "--out",
                                       "{root}/l5", "--mechanism-option", "num_features=many",
                                       *TINY_LM], "lm train",
     "bad options for mechanism 'performer': num_features must be an int or None, got 'many'",
     None),
    ("lm-checkpoint-seconds-negative", ["lm", "train", "--attention", "leap", "--out",
                                        "{root}/l6", "--checkpoint-seconds", "-5", *TINY_LM],
     "lm train", "argument --checkpoint-seconds: must be >= 0, got -5", "{root}/l6"),
    ("lm-train-unknown-option", ["lm", "train", "--attention", "leap", "--out", "{root}/l7",
                                 "--colour", "red", *TINY_LM], "lm train",
     "unrecognized arguments: --colour red (see 'leapformer lm train --help')", "{root}/l7"),
    ("lm-report-unknown-option", ["lm", "report", "--runs", "{root}/grid", "--out",
                                  "{root}/lm.md", "--fast"], "lm report",
     "unrecognized arguments: --fast", "{root}/lm.md"),
    ("lm-seed-negative", ["lm", "train", "--attention", "leap", "--out", "{root}/l2",
                          "--seed", "-1", *TINY_LM], "lm train", "a seed must be >= 0",
     "{root}/l2"),
    ("lm-data-missing", ["lm", "train", "--attention", "leap", "--out", "{root}/l3", "--data",
                         "{root}/nope"], "lm train", "data {root}/nope does not exist",
     "{root}/l3"),
    ("lm-eval-out-unwritable", ["lm", "eval", "--run", "{root}/nope", "--out",
                                "{root}/a-file/eval.json"], "lm eval",
     "--out {root}/a-file/eval.json: {root}/a-file is a file", None),
    ("lm-report-out-unwritable", ["lm", "report", "--runs", "{root}/grid", "--out",
                                  "{root}/a-file/lm.md"], "lm report",
     "--out {root}/a-file/lm.md: {root}/a-file is a file", None),
    # -- translate, data, bench, top level
    ("translate-seed-negative", ["translate", "train", "--out", "{root}/t1", "--seed", "-4"],
     "translate train", "a seed must be >= 0, got -4", "{root}/t1"),
    ("translate-mechanism-option-not-a-dict", ["translate", "train", "--out", "{root}/t3",
                                               "--mechanism-option", "leap=4"],
     "translate train", "mechanism_options['leap'] must be a dict of options", "{root}/t3"),
    ("translate-mechanism-option-unknown-name", ["translate", "train", "--out", "{root}/t4",
                                                 "--mechanism-option", 'lepa={"hidden": 4}'],
     "translate train", "mechanism_options names an unknown mechanism 'lepa'", "{root}/t4"),
    ("translate-checkpoint-seconds-bad", ["translate", "train", "--out", "{root}/t5",
                                          "--checkpoint-seconds", "soon"], "translate train",
     "argument --checkpoint-seconds: not a number of seconds: 'soon'", "{root}/t5"),
    ("translate-train-unknown-option", ["translate", "train", "--out", "{root}/t6", "--beam",
                                        "5"], "translate train",
     "unrecognized arguments: --beam 5", "{root}/t6"),
    ("translate-spec-unknown", ["translate", "train", "--out", "{root}/t2", "--spec",
                                "enc=bogus"], "translate train",
     "bad attention spec 'enc=bogus'", "{root}/t2"),
    ("data-listops-seed-negative", ["data", "listops", "--n", "2", "--seed", "-1", "--out",
                                    "{root}/x.tsv"], "data listops", "a seed must be >= 0",
     None),
    ("data-listops-lengths", ["data", "listops", "--n", "2", "--min-len", "9", "--max-len",
                              "5", "--out", "{root}/x.tsv", "--no-progress"], "data listops",
     "max_len must be >= min_len", None),
    ("bench-ops-length-zero", ["bench", "ops", "--lengths", "0"], "bench ops",
     "length must be positive", None),
    ("bench-decode-unknown-mechanism", ["bench", "decode", "--mechanisms", "nope",
                                        "--no-progress"], "bench decode",
     "unknown attention mechanism 'nope'", None),
    ("data-unknown-option", ["data", "listops", "--n", "2", "--out", "{root}/x.tsv",
                             "--colour", "red"], "data listops",
     "unrecognized arguments: --colour red", "{root}/x.tsv"),
    ("bench-unknown-option", ["bench", "ops", "--colour", "red"], "bench ops",
     "unrecognized arguments: --colour red", None),
    ("top-level-unknown-option", ["--colour", "lra-report", "--runs", "{root}/grid"],
     "lra-report", "unrecognized arguments: --colour", None),
    ("unknown-command", ["frobnicate"], "", "invalid choice: 'frobnicate'", None),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # usage errors exit from the parser
        code = stop.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,command,fragment,absent",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(world, capsys, argv, command, fragment, absent):
    fill = lambda s: s.replace("{root}", str(world))  # noqa: E731
    code, err = _run([fill(a) for a in argv], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    prefix = f"error: leapformer {command}: " if command else "error: leapformer: "
    assert lines[0].startswith(prefix), err
    assert fill(fragment) in lines[0], err
    assert "Traceback" not in err
    if absent is not None:
        assert not os.path.exists(fill(absent)), "a failed command left its folder behind"


def test_cases_have_unique_ids():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_full_disk_is_one_line(world, capsys, monkeypatch):
    """ENOSPC at the first write of a run (its config.json): one line naming the file;
    the temporary file is gone and the folder, empty, is removed."""
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = world / "full-disk"
    code, err = _run([*LRA, "--data-dir", str(world / "data"), "--out", str(out)], capsys)
    monkeypatch.undo()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: leapformer lra: ") and "No space left on device" in err
    assert f"cannot write {out}/config.json" in err and ".tmp" not in err
    assert not out.exists()


def test_read_only_folder_is_one_line(world, capsys, monkeypatch):
    """EROFS on the first file a run creates (its lock): one line, exit 2."""
    out = world / "read-only"
    out.mkdir()
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(out)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, err = _run([*LRA, "--data-dir", str(world / "data"), "--out", str(out)], capsys)
    monkeypatch.undo()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: leapformer lra: ") and "Read-only file system" in err
    assert f"{out}/.lock" in err and list(out.iterdir()) == []
