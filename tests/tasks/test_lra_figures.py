"""Figure 1 (accuracy vs throughput) and Figure 3 (re-weighting heatmaps)."""

import json
import math

import pytest
import torch

from leapformer.cli import main
from leapformer.models import ClassifierConfig, SequenceClassifier
from leapformer.tasks.lra.figures import (
    accuracy_throughput_figure,
    cosformer_reweighting,
    log_ticks,
    plot_accuracy_throughput,
    plot_reweighting,
    reweighting_figure,
    reweighting_matrices,
)
from leapformer.tasks.lra.report import collect, figure1_points

PNG = b"\x89PNG\r\n\x1a\n"


def _model(attention, max_length=40):
    torch.manual_seed(0)
    return SequenceClassifier(ClassifierConfig(vocab_size=16, num_classes=10,
                                               max_length=max_length, attention=attention))


def test_cosformer_reweighting_is_the_cosine_of_the_relative_distance():
    L = 5
    w = cosformer_reweighting(L)
    for i in range(L):
        for j in range(L):
            assert w[i, j].item() == pytest.approx(math.cos(math.pi / 2 * (i - j) / L))
    with pytest.raises(ValueError, match="length must be positive"):
        cosformer_reweighting(0)


def test_a_cosformer_model_reweights_as_cosformer_in_every_layer_and_head():
    model = _model("cosformer")
    tokens = torch.randint(1, 16, (1, 12))
    mats = reweighting_matrices(model, tokens)
    assert len(mats) == 2
    for m in mats:
        assert m.shape == (2, 12, 12)
        torch.testing.assert_close(m, cosformer_reweighting(12).expand(2, 12, 12))


def test_leap_reweighting_follows_its_proportion_networks():
    model = _model("leap")
    tokens = torch.randint(1, 16, (1, 9))
    mats = reweighting_matrices(model, tokens)
    assert [m.shape for m in mats] == [(2, 9, 9)] * 2
    assert all(((m >= 0) & (m <= 1)).all() for m in mats)
    assert not torch.allclose(mats[0], torch.ones_like(mats[0]))  # learned, not flat
    # proportion networks that output a constant (zero last layer) give weights of 1
    for mech in (m for m in model.modules() if hasattr(m, "leap_q")):
        for net in (mech.leap_q.net, mech.leap_k.net):
            last = [m for m in net if isinstance(m, torch.nn.Linear)][-1]
            torch.nn.init.zeros_(last.weight)
            torch.nn.init.constant_(last.bias, 0.3)
    for m in reweighting_matrices(model, tokens):
        torch.testing.assert_close(m, torch.ones_like(m))
    assert model.training  # the mode is restored


def test_reweighting_errors():
    with pytest.raises(ValueError, match="no re-weighted"):
        reweighting_matrices(_model("softmax"), torch.randint(1, 16, (1, 5)))
    with pytest.raises(ValueError, match="batch 1"):
        reweighting_matrices(_model("leap"), torch.randint(1, 16, (2, 5)))


def test_plots_write_png_files(tmp_path):
    pts = [{"mechanism": "softmax", "accuracy": 40.0, "throughput": 1e3, "memory_mb": 500.0},
           {"mechanism": "leap", "accuracy": 41.0, "throughput": 5e3, "memory_mb": 60.0}]
    out = plot_accuracy_throughput(pts, tmp_path / "f1.png", title="t")
    assert out.read_bytes()[:8] == PNG
    out = plot_reweighting({"a": cosformer_reweighting(6), "b": torch.rand(6, 6)},
                           tmp_path / "sub" / "f3.png")
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="at least one point"):
        plot_accuracy_throughput([], tmp_path / "x.png", title="t")
    with pytest.raises(ValueError, match="lacks"):
        plot_accuracy_throughput([{"mechanism": "a"}], tmp_path / "x.png", title="t")
    with pytest.raises(ValueError, match="2-D"):
        plot_reweighting({"a": torch.rand(2, 3, 3)}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _overlap(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _boxes(fig, texts):
    renderer = fig.canvas.get_renderer()
    from matplotlib.text import Text

    return [Text.get_window_extent(t, renderer) for t in texts if t.get_text()]


def test_log_ticks_are_round_and_spread():
    assert log_ticks(800, 150_000) == [1e3, 1e4, 1e5]
    ticks = log_ticks(4500, 9500)  # less than a decade: more mantissas, thinned
    assert len(ticks) >= 3 and all(4500 <= t <= 9500 and float(f"{t:.2g}") == t for t in ticks)
    assert all(math.log10(b / a) >= math.log10(9500 / 4500) / 7 - 1e-12
               for a, b in zip(ticks, ticks[1:]))
    with pytest.raises(ValueError, match="0 < low < high"):
        log_ticks(5, 5)


def test_figure1_labels_and_ticks_do_not_overlap():
    import matplotlib.pyplot as plt

    # the published figure's crowd: eleven mechanisms within a factor of 8 of each other
    crowd = [("softmax", 32.7, 2300, 3863), ("bigbird", 33.8, 13000, 878),
             ("cosformer", 33.7, 85000, 207), ("elu", 33.2, 93000, 198),
             ("linear", 32.9, 95000, 190), ("leap", 32.85, 72000, 255),
             ("reformer", 32.95, 38000, 416), ("nystromformer", 32.8, 44000, 364),
             ("informer", 32.75, 43000, 207), ("performer", 32.3, 59000, 308),
             ("skyformer", 31.95, 38500, 499), ("linformer", 31.3, 63000, 253)]
    narrow = [("softmax", 32.1, 5400, 605), ("linear", 31.5, 7900, 605),
              ("cosformer", 33.0, 6900, 605), ("leap", 32.4, 6100, 605)]
    for rows in (crowd, narrow):
        fig = accuracy_throughput_figure(
            [{"mechanism": m, "accuracy": a, "throughput": t, "memory_mb": mem}
             for m, a, t, mem in rows], title="t")
        ax = fig.axes[0]
        fig.canvas.draw()
        ticks = _boxes(fig, ax.get_xticklabels())
        assert len(ticks) >= 3
        assert not any(_overlap(a, b) for i, a in enumerate(ticks) for b in ticks[i + 1:])
        labels = _boxes(fig, ax.texts)
        assert len(labels) == len(rows)
        assert not any(_overlap(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])
        plt.close(fig)


def test_heatmap_title_clears_the_panel_titles():
    import matplotlib.pyplot as plt

    fig = reweighting_figure({f"panel {i}": torch.rand(30, 30) for i in range(3)},
                             title="re-weighting on a ListOps example (30 tokens, label 3)")
    fig.canvas.draw()
    (top,) = _boxes(fig, fig.texts)  # the suptitle
    titles = _boxes(fig, [ax.title for ax in fig.axes])  # the panels' (colour bars have none)
    assert len(titles) == 3 and not any(_overlap(top, t) for t in titles)
    plt.close(fig)


def _result(root, task, mech, acc, tps, mem):
    d = root / f"{task}-{mech}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "task": task, "attention": mech, "test_accuracy": acc, "train_tokens_per_s": tps,
        "train_steps_per_s": 1.0, "peak_rss_mb": mem, "parameters": 1}))


def test_figure1_points_from_runs_or_from_a_speed_file(tmp_path):
    _result(tmp_path, "listops", "leap", 0.4, 100.0, 300.0)
    _result(tmp_path, "text", "leap", 0.6, 300.0, 500.0)
    _result(tmp_path, "listops", "softmax", 0.5, 50.0, 900.0)  # lacks text: no point
    points, label = figure1_points(collect([tmp_path]))
    assert points == [{"mechanism": "leap", "accuracy": pytest.approx(50.0),
                       "throughput": 200.0, "memory_mb": 500.0}]
    assert "runs" in label
    speed = {"config": {"length": 4096}, "rows": [
        {"mode": "train", "mechanism": "leap", "tokens_per_s": 7.0, "peak_mb": 3.0, "error": None},
        {"mode": "infer", "mechanism": "leap", "tokens_per_s": 9.0, "peak_mb": 1.0, "error": None}]}
    points, label = figure1_points(collect([tmp_path]), speed)
    assert points[0]["throughput"] == 7.0 and points[0]["memory_mb"] == 3.0
    assert "4096" in label
    (tmp_path / "speed.json").write_text(json.dumps(speed))
    fig = tmp_path / "fig1.png"
    assert main(["lra-report", "--runs", str(tmp_path), "--figure", str(fig),
                 "--speed", str(tmp_path / "speed.json")]) == 0
    assert fig.read_bytes()[:8] == PNG


def test_heatmap_command_on_a_trained_listops_run(tmp_path, capsys):
    from leapformer.tasks.lra import run_lra

    run = tmp_path / "run"
    run_lra("listops", "leap", out=run, steps=2, progress=False,
            overrides={"n_train": 32, "n_valid": 8, "n_test": 8})
    fig = tmp_path / "fig3.png"
    assert main(["heatmap", "--checkpoint", str(run / "best.pt"), "--out", str(fig)]) == 0
    assert fig.read_bytes()[:8] == PNG
    assert main(["heatmap", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(fig)]) == 2
    assert "does not exist" in capsys.readouterr().err
