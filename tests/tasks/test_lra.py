"""End-to-end LRA runs on tiny generated ListOps data."""

import json
import math

import numpy as np
import pytest

from leapformer.nn import MECHANISMS
from leapformer.tasks.lra import get_profile, load_splits, run_lra

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_train=96, n_valid=32, n_test=32, min_len=5, max_len=30, batch_size=16,
            eval_every=10, lr=3e-3, warmup_steps=0, max_length=64)


def _train_losses(out):
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["kind"] == "train"], lines


@pytest.mark.parametrize("mech", ["softmax", "leap"])
def test_listops_run_learns_and_reports(mech, tmp_path):
    res = run_lra("listops", mech, profile="lite", out=tmp_path, steps=40, progress=False,
                  overrides=TINY)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == res
    assert 0.0 <= res["test_accuracy"] <= 1.0 and res["steps"] == 40
    assert res["parameters"] > 0 and res["train_tokens_per_s"] > 0 and res["peak_rss_mb"] > 0
    losses, _ = _train_losses(tmp_path)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first


@pytest.mark.parametrize("mech", sorted(MECHANISMS))
def test_every_mechanism_trains_end_to_end(mech, tmp_path):
    """A few steps of every registered mechanism through the whole harness; finite loss."""
    tiny = dict(TINY, n_train=32, n_valid=16, n_test=16, eval_every=3)
    res = run_lra("listops", mech, profile="lite", out=tmp_path, steps=3, progress=False,
                  overrides=tiny)
    losses, _ = _train_losses(tmp_path)
    assert res["steps"] == 3 and res["attention"] == mech
    assert losses and all(math.isfinite(x) for x in losses)
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


def test_resume_continues_the_step_count(tmp_path):
    run_lra("listops", "linear", profile="lite", out=tmp_path, steps=10, progress=False,
            overrides=TINY)
    res = run_lra("listops", "linear", profile="lite", out=tmp_path, steps=20, resume=True,
                  progress=False, overrides=TINY)
    assert res["steps"] == 20
    _, lines = _train_losses(tmp_path)
    steps = [r["step"] for r in lines if r["kind"] == "train"]
    assert steps == sorted(steps) and steps[-1] == 20 and len(set(steps)) == len(steps)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="task must be one of"):
        get_profile("text8", "lite")
    with pytest.raises(ValueError, match="profile must be one of"):
        get_profile("listops", "huge")
    with pytest.raises(ValueError, match="unknown profile fields"):
        run_lra("listops", "leap", out=tmp_path, overrides={"colour": 1})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_lra("listops", "leap", out=tmp_path, data_dir=tmp_path / "nope")


def test_cli_runs_on_official_tsv_files(tmp_path, capsys):
    from leapformer.cli import main
    from leapformer.data import generate_listops, write_tsv

    data = tmp_path / "data"
    for i, name in enumerate(("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")):
        write_tsv(generate_listops(40, seed=i, min_len=5, max_len=25), data / name)
    out = tmp_path / "run"
    assert main(["lra", "--task", "listops", "--attention", "cosformer", "--data-dir", str(data),
                 "--out", str(out), "--steps", "4", "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 4 and res["attention"] == "cosformer"
    assert res["mean_train_length"] < 26
    assert "wrote" in capsys.readouterr().out


def test_pathfinder_run_and_official_layout(tmp_path):
    from leapformer.data.pathfinder import generate_pathfinder, save_pathfinder_dir

    tiny = dict(n_train=16, n_valid=8, n_test=8, batch_size=8, eval_every=2)
    res = run_lra("pathfinder", "leap", out=tmp_path / "gen", steps=2, progress=False,
                  overrides=tiny)
    assert res["steps"] == 2 and res["mean_train_length"] == 256  # lite: 16x16 images
    images, labels = generate_pathfinder(20, seed=5)
    save_pathfinder_dir(images, labels, tmp_path / "release")
    res = run_lra("pathfinder", "linear", out=tmp_path / "off", steps=2, progress=False,
                  data_dir=tmp_path / "release", overrides=tiny)
    assert res["steps"] == 2 and res["mean_train_length"] == 1024
    with pytest.raises(ValueError, match="image_size must be one of"):
        run_lra("pathfinder", "linear", out=tmp_path / "bad", steps=1, progress=False,
                overrides=dict(tiny, image_size=20))


def test_pathfinder_lite_stand_in_three_levels_keep_the_label():
    from dataclasses import replace

    from leapformer.data.pathfinder import generate_pathfinder
    from leapformer.tasks.lra.sets import pathfinder as pf
    from tests.data.test_pathfinder import _components, _pixel

    lite = get_profile("pathfinder", "lite")
    assert lite.stand_in == "three-level-masked"
    assert get_profile("pathfinder", "paper").stand_in is None
    images, labels, info = generate_pathfinder(60, seed=7, size=16, return_info=True,
                                               **pf.GEOMETRY[16])
    out = pf.three_levels(images, info.markers)
    assert set(np.unique(out).tolist()) == {0, pf.MARKER_LEVEL, 255}
    np.testing.assert_array_equal(out > 0, images >= 128)     # nothing lit is added or lost
    for img, m, y in zip(out, info.markers, labels):
        assert img[_pixel(m[0])] == img[_pixel(m[1])] == pf.MARKER_LEVEL
        comp = _components(img, 1)   # the markers are joined exactly when the label says so
        assert (comp[_pixel(m[0])] == comp[_pixel(m[1])]) == bool(y)
    small = replace(lite, n_train=8, n_valid=4, n_test=4)
    plain = load_splits("pathfinder", replace(small, stand_in="three-level"), None, 0)
    assert {t for seq in plain.splits["train"].tokens for t in seq} == {1, 129, 256}
    data = load_splits("pathfinder", small, None, 0)  # the background is padding
    assert {t for seq in data.splits["train"].tokens for t in seq} == {0, 129, 256}
    for a, b in zip(plain.splits["train"].tokens, data.splits["train"].tokens):
        assert len(a) == len(b) == 256
        assert [0 if t == 1 else t for t in a] == list(b)
    with pytest.raises(ValueError, match="stand_in must be one of"):
        load_splits("pathfinder", replace(lite, stand_in="two-level"), None, 0)


def test_data_pathfinder_cli(tmp_path, capsys):
    from leapformer.cli import main
    from leapformer.data import load_pathfinder_dir

    assert main(["data", "pathfinder", "--n", "6", "--seed", "1", "--out", str(tmp_path)]) == 0
    images, labels = load_pathfinder_dir(tmp_path)
    assert images.shape == (6, 32, 32) and int(labels.sum()) == 3
    assert "3 connected" in capsys.readouterr().out


def test_inputs_longer_than_max_length_are_counted_and_warned(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="leapformer.tasks.lra.run"):
        res = run_lra("listops", "linear", profile="lite", out=tmp_path / "cut", steps=2,
                      progress=False, overrides=dict(TINY, max_length=12))
    cut = res["truncated"]
    assert set(cut) == {"train", "valid", "test"} and 0 < cut["train"] < TINY["n_train"]
    assert json.loads((tmp_path / "cut" / "results.json").read_text())["truncated"] == cut
    assert f"train {cut['train']} of {TINY['n_train']}" in caplog.text
    assert "max_length=12" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="leapformer.tasks.lra.run"):
        res = run_lra("listops", "linear", profile="lite", out=tmp_path / "whole", steps=2,
                      progress=False, overrides=TINY)
    assert res["truncated"] == {"train": 0, "valid": 0, "test": 0} and caplog.text == ""


def test_steps_scale_the_warm_up():
    from leapformer.tasks.lra.run import lra_settings

    assert lra_settings("listops", "lite").warmup_steps == 100
    assert lra_settings("listops", "lite", steps=100).warmup_steps == 10
    assert lra_settings("listops", "lite", steps=3).warmup_steps == 1
    assert lra_settings("listops", "lite", steps=5000).warmup_steps == 100
    p = lra_settings("listops", "lite", steps=20)
    assert p.steps == 20 and p.eval_every == 20


def test_resume_checks_the_saved_settings(tmp_path):
    run_lra("listops", "linear", profile="lite", out=tmp_path, steps=2, progress=False,
            overrides=TINY)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format"] == "leapformer-lra-run" and config["steps"] == 2
    assert config["model"]["attention"] == "linear"
    with pytest.raises(ValueError, match=r"differ from the saved ones in settings.n_train "
                       r"\(settings.n_train: saved 96, now 64\)"):
        run_lra("listops", "linear", profile="lite", out=tmp_path, steps=4, resume=True,
                progress=False, overrides=dict(TINY, n_train=64))
    with pytest.raises(ValueError, match="in attention, mechanism_options"):
        run_lra("listops", "leap", profile="lite", out=tmp_path, steps=4, resume=True,
                progress=False, overrides=TINY, mechanism_options={"hidden": 2})
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        run_lra("listops", "linear", out=tmp_path / "s", seed=-1)
    assert not (tmp_path / "s").exists()
    res = run_lra("listops", "linear", profile="lite", out=tmp_path, steps=4, resume=True,
                  progress=False, overrides=TINY)
    assert res["steps"] == 4 and json.loads((tmp_path / "config.json").read_text())["steps"] == 4


def test_grid_resumes_to_more_steps_and_refuses_other_settings(tmp_path):
    from leapformer.tasks.lra.grid import run_grid

    tiny = {"n_train": 32, "n_valid": 8, "n_test": 8}
    said = []
    run_grid(["listops"], ["linear"], tmp_path, steps=2, overrides=tiny, progress=False,
             announce=said.append)
    said.clear()
    run_grid(["listops"], ["linear"], tmp_path, steps=2, overrides=tiny, progress=False,
             announce=said.append)
    assert said == ["[1/1] listops linear: done, skipped"]
    said.clear()
    res = run_grid(["listops"], ["linear"], tmp_path, steps=3, overrides=tiny, progress=False,
                   announce=said.append)
    assert said[0] == "[1/1] listops linear (resuming)" and res["runs"][0]["steps"] == 3
    with pytest.raises(ValueError, match="trained for 3 steps, more than the 2 asked"):
        run_grid(["listops"], ["linear"], tmp_path, steps=2, overrides=tiny, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(differing: seed\)"):
        run_grid(["listops"], ["linear"], tmp_path, steps=3, overrides=tiny, seed=1,
                 progress=False)
    res = run_grid(["listops"], ["linear"], tmp_path, steps=2, overrides=tiny, seed=1,
                   overwrite=True, progress=False, announce=said.append)
    assert res["runs"][0]["steps"] == 2 and res["runs"][0]["seed"] == 1


def test_resume_of_a_run_without_config_checks_the_checkpoint(tmp_path):
    """Runs made before config.json: task, mechanism and profile come from last.pt."""
    run_lra("listops", "linear", profile="lite", out=tmp_path, steps=2, progress=False,
            overrides=TINY)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ValueError, match="attention: saved 'linear', now 'elu'"):
        run_lra("listops", "elu", profile="lite", out=tmp_path, steps=3, resume=True,
                progress=False, overrides=TINY)


def test_2d_positions_follow_the_loaded_image_width(tmp_path):
    """The lite Pathfinder profile's 2-D positions assume its 16-pixel stand-in; an official
    32x32 release given with data_dir gets a 32-pixel grid."""
    from leapformer.data.pathfinder import generate_pathfinder, save_pathfinder_dir
    from leapformer.tasks.lra.batching import Split
    from leapformer.tasks.lra.run import image_width

    assert image_width(Split([[1] * 1024], [0]), 16) == 32
    assert image_width(Split([[1] * 256], [0]), 16) == 16
    assert image_width(Split([[1] * 300], [0]), 16) == 16  # not a square: the profile's
    images, labels = generate_pathfinder(20, seed=5)
    save_pathfinder_dir(images, labels, tmp_path / "release")
    tiny = dict(n_train=16, n_valid=8, n_test=8, batch_size=8, eval_every=2)
    res = run_lra("pathfinder", "softmax", out=tmp_path / "off", steps=1, progress=False,
                  data_dir=tmp_path / "release", overrides=tiny)
    assert res["model"]["positions"] == "sincos2d" and res["model"]["grid_width"] == 32
