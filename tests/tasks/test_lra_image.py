"""LRA Image task: the loader's splits and tokens (generated stand-in, CIFAR-10
python batches, IDX files) and tiny end-to-end runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leapformer.data.image import generate_shapes
from leapformer.tasks.lra import get_profile, load_splits, run_lra
from leapformer.tasks.lra.sets import get_task
from tests.data.test_image import tf_grey_reference, write_cifar, write_idx

TINY = dict(n_train=40, n_valid=20, n_test=20, batch_size=8, eval_every=3)


def test_module_contract_and_profiles():
    task = get_task("image")
    assert task.PAIRED is False and set(task.PROFILES) == {"paper", "lite"}
    paper = get_profile("image", "paper")
    assert (paper.max_length, paper.batch_size, paper.lr, paper.steps) == (1024, 256, 1e-4, 30_000)
    assert paper.image_size == 32
    lite = get_profile("image", "lite")
    assert lite.max_length == 1024 and lite.image_size == 16
    assert lite.stand_in == "plain" and paper.stand_in is None


def test_lite_stand_in_is_plain_shapes():
    from dataclasses import replace

    p = replace(get_profile("image", "lite"), n_train=20, n_valid=10, n_test=10)
    data = load_splits("image", p, None, seed=1)
    assert data.source == "generated plain shapes (stand-in)"
    images, labels = generate_shapes(20, seed=3, size=16, style="plain")
    assert data.splits["train"].tokens[0] == (images[0].ravel().astype(int) + 1).tolist()
    assert data.splits["train"].labels == labels.tolist()
    tokens = {t for split in data.splits.values() for seq in split.tokens for t in seq}
    assert tokens <= {1, 65, 129, 192, 256} and {1, 256} <= tokens   # 5 grey levels
    with pytest.raises(ValueError, match="style must be one of"):
        load_splits("image", replace(p, stand_in="noisy"), None, seed=1)


def test_generated_splits_and_tokens():
    p = get_profile("image", "paper")
    from dataclasses import replace
    p = replace(p, n_train=30, n_valid=10, n_test=20)
    data = load_splits("image", p, None, seed=2)
    assert data.vocab_size == 257 and data.num_classes == 10
    assert data.source == "generated shapes (stand-in)"
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 30, "valid": 10, "test": 20}
    images, labels = generate_shapes(30, seed=6)       # train uses seed * 3 + 0
    assert data.splits["train"].tokens[0] == (images[0].ravel().astype(int) + 1).tolist()
    assert data.splits["train"].labels == labels.tolist()
    for split in data.splits.values():
        assert all(len(t) == 1024 and min(t) >= 1 and max(t) <= 256 for t in split.tokens)
    # seeds differ between splits, and between runs with another seed
    assert data.splits["valid"].tokens[0] != data.splits["train"].tokens[0]
    other = load_splits("image", p, None, seed=3)
    assert other.splits["train"].tokens[0] != data.splits["train"].tokens[0]


def test_cifar_folder_splits(tmp_path):
    _, (train_rgb, train_y), (test_rgb, test_y) = write_cifar(tmp_path, n_per_batch=4)
    data = load_splits("image", get_profile("image", "lite"), tmp_path, seed=0)
    assert "CIFAR-10 python batches" in data.source and "cifar-10-batches-py" in data.source
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {"train": 18, "valid": 2, "test": 4}     # valid = last 10% of train
    assert data.splits["valid"].labels == train_y[18:].tolist()
    assert data.splits["train"].labels == train_y[:18].tolist()
    assert data.splits["test"].labels == test_y.tolist()
    grey = np.array(data.splits["test"].tokens) - 1
    ref = tf_grey_reference(test_rgb).reshape(4, -1)
    assert np.abs(grey - ref).max() <= 1 and (grey == ref).mean() > 0.999


def test_idx_folder_splits(tmp_path):
    written = write_idx(tmp_path / "fashion", n_train=20, n_test=5, gz=True)
    data = load_splits("image", get_profile("image", "lite"), tmp_path / "fashion", seed=0)
    assert "IDX files" in data.source
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 18, "valid": 2, "test": 5}
    first = np.array(data.splits["train"].tokens[0]).reshape(32, 32) - 1
    np.testing.assert_array_equal(first[2:30, 2:30], written["train"][0][0])
    assert first[0].tolist() == [0] * 32       # padding pixels are black (token 1), not pad id 0
    assert data.splits["test"].labels == written["t10k"][1].tolist()


def test_unknown_folder_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="neither CIFAR-10 python batches"):
        load_splits("image", get_profile("image", "lite"), tmp_path, seed=0)


def test_run_on_generated_shapes(tmp_path):
    res = run_lra("image", "linear", out=tmp_path, steps=3, progress=False, overrides=TINY)
    assert json.loads((tmp_path / "results.json").read_text()) == res
    assert res["steps"] == 3 and res["data_source"] == "generated plain shapes (stand-in)"
    assert res["mean_train_length"] == 256          # lite: 16x16 generated images
    assert 0.0 <= res["test_accuracy"] <= 1.0


def test_run_on_cifar_fixture(tmp_path):
    write_cifar(tmp_path / "data", n_per_batch=4)
    res = run_lra("image", "linear", out=tmp_path / "run", steps=3, progress=False,
                  data_dir=tmp_path / "data", overrides=TINY)
    assert res["steps"] == 3 and "CIFAR-10" in res["data_source"]
    assert res["mean_train_length"] == 1024         # official 32x32 images keep 1024 tokens
    assert 0.0 <= res["test_accuracy"] <= 1.0
