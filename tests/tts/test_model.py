"""TransformerTTS: shapes, losses against a hand-written oracle, frame-by-frame decoding ==
the teacher-forced forward (softmax, LeaP, cosFormer, a mix), pre-net dropout, bad inputs."""

import pytest
import torch
import torch.nn.functional as F

from leapformer.models.tts import TransformerTTS, TTSConfig, frames_for_seconds

pytestmark = pytest.mark.usefixtures("one_thread")

N_MELS = 8


def _model(spec="softmax", length_predictor=None, **kw) -> TransformerTTS:
    torch.manual_seed(0)
    cfg = TTSConfig.preset("tiny", 20, n_mels=N_MELS, num_decoder_layers=2, **kw)
    model = TransformerTTS(cfg, spec, length_predictor).eval()
    model.decoder_prenet.always_dropout = False
    return model


def _batch(B=3, S=7, T=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(3, 20, (B, S), generator=g)
    s_len = torch.tensor([S, max(1, S - 3), 1][:B])
    mask = torch.arange(S)[None] >= s_len[:, None]
    text = text.masked_fill(mask, 0)
    mel = torch.randn(B, T, N_MELS, generator=g)
    lengths = torch.tensor([T, max(1, T - 5), 1][:B])
    return text, mask, mel, lengths


def test_shapes_and_presets():
    model = _model()
    text, mask, mel, lengths = _batch()
    out = model(text, mask, mel, lengths)
    assert out.mel.shape == out.mel_post.shape == (3, 12, N_MELS)
    assert out.stop.shape == (3, 12)
    post, n = model.synthesize(text, mask, max_frames=4)
    assert post.shape[0] == 3 and post.shape[2] == N_MELS and 1 <= post.shape[1] <= 4
    assert n.shape == (3,) and bool((n >= 1).all()) and bool((n <= 4).all())
    assert frames_for_seconds(1.0) == 1 + 22050 // 256
    for name in ("lite", "paper"):
        cfg = TTSConfig.preset(name, 40)
        assert cfg.postnet_layers == 5 and cfg.prenet_layers == 3


@pytest.mark.parametrize("spec", ["softmax", "leap", "cosformer",
                                  "enc=leap,dec=linear,cross=cosformer"])
def test_frame_by_frame_decoding_equals_forward(spec):
    model = _model(spec)
    text, mask, mel, lengths = _batch()
    with torch.no_grad():
        full = model(text, mask, mel, lengths)
        enc = model.encode(text, mask)
        cache = model.new_decoder_cache(enc, target_length=lengths, max_length=mel.shape[1])
        inputs = torch.cat([torch.zeros(3, 1, N_MELS), mel[:, :-1]], dim=1)
        mels, stops = zip(*(model.decode_step(inputs[:, t:t + 1], cache)
                            for t in range(mel.shape[1])))
    mels, stops = torch.cat(mels, 1), torch.cat(stops, 1)
    for b in range(3):  # item b's real frames (the rest is padding in the forward)
        n = int(lengths[b])
        torch.testing.assert_close(mels[b, :n], full.mel[b, :n], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(stops[b, :n], full.stop[b, :n], atol=2e-5, rtol=1e-4)
    # several frames per call give the same as one per call
    with torch.no_grad():
        cache = model.new_decoder_cache(enc, target_length=lengths)
        a, _ = model.decode_step(inputs[:, :5], cache)
        b, _ = model.decode_step(inputs[:, 5:], cache)
    torch.testing.assert_close(torch.cat([a, b], 1)[0], full.mel[0], atol=2e-5, rtol=1e-4)


def test_synthesize_matches_its_own_teacher_forcing():
    """The synthesised frames, fed back teacher-forced, reproduce themselves; post-net
    output equals mel + postnet(mel) over the real frames."""
    model = _model("leap")
    text, mask, _, _ = _batch(B=1, S=5)
    post, n = model.synthesize(text, mask, max_frames=6, min_frames=6)
    assert int(n[0]) == 6
    with torch.no_grad():
        out = model(text, mask, _decoded(model, text, mask, 6))
    torch.testing.assert_close(out.mel_post, post, atol=2e-5, rtol=1e-4)


def _decoded(model, text, mask, n):
    with torch.no_grad():
        enc = model.encode(text, mask)
        cache = model.new_decoder_cache(enc)
        frame, frames = torch.zeros(1, 1, N_MELS), []
        for _ in range(n):
            frame, _ = model.decode_step(frame, cache)
            frames.append(frame)
    return torch.cat(frames, 1)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_loss_matches_oracle(kind):
    model = _model(loss=kind, stop_pos_weight=3.0)
    text, mask, mel, lengths = _batch()
    losses = model.loss(text, mask, mel, lengths)
    out = model(text, mask, mel, lengths)
    dist = (lambda a, b: (a - b).abs()) if kind == "l1" else (lambda a, b: (a - b) ** 2)
    pre = post = stop = 0.0
    for b in range(3):
        n = int(lengths[b])
        pre += dist(out.mel[b, :n], mel[b, :n]).sum()
        post += dist(out.mel_post[b, :n], mel[b, :n]).sum()
        target = torch.zeros(n)
        target[-1] = 1.0
        x = out.stop[b, :n]
        stop += (-(3.0 * target * F.logsigmoid(x) + (1 - target) * F.logsigmoid(-x))).sum()
    frames = int(lengths.sum())
    torch.testing.assert_close(losses["mel_loss"], pre / (frames * N_MELS))
    torch.testing.assert_close(losses["post_loss"], post / (frames * N_MELS))
    torch.testing.assert_close(losses["stop_loss"], stop / frames)
    total = losses["mel_loss"] + losses["post_loss"] + losses["stop_loss"]
    torch.testing.assert_close(losses["loss"], total)
    losses["loss"].backward()
    assert model.postnet.convs[0].weight.grad is not None


def test_conv_length_predictor_trained_in_loss():
    model = _model("cosformer", "conv")
    text, mask, mel, lengths = _batch()
    losses = model.loss(text, mask, mel, lengths)
    assert float(losses["length_loss"].detach()) > 0
    assert int(model.new_decoder_cache(model.encode(text, mask)).target_length.numel()) == 3


def test_padding_does_not_change_an_item():
    model = _model("cosformer")
    text, mask, mel, lengths = _batch()
    full = model(text, mask, mel, lengths)
    n, s = int(lengths[1]), int((~mask[1]).sum())
    alone = model(text[1:2, :s], None, mel[1:2, :n])
    torch.testing.assert_close(alone.mel_post[0], full.mel_post[1, :n], atol=2e-5, rtol=1e-4)


def test_prenet_dropout_always_on_unless_disabled():
    model = _model()
    x = torch.randn(2, 4, N_MELS)
    model.decoder_prenet.always_dropout = True
    assert not torch.equal(model.decoder_prenet(x), model.decoder_prenet(x))
    model.decoder_prenet.always_dropout = False
    assert torch.equal(model.decoder_prenet(x), model.decoder_prenet(x))


def test_bad_inputs():
    model = _model("cosformer")
    text, mask, mel, lengths = _batch()
    with pytest.raises(ValueError, match="n_mels"):
        model(text, mask, mel[..., :3], lengths)
    with pytest.raises(ValueError, match="mel_lengths"):
        model(text, mask, mel, lengths + 20)
    with pytest.raises(ValueError, match="outside"):
        model(text + 100, mask, mel, lengths)
    with pytest.raises(ValueError, match="target length"):
        model.synthesize(text, mask, max_frames=3)
    with pytest.raises(ValueError, match="max_frames"):
        model.synthesize(text, mask, max_frames=0, target_length=3)
    for bad in (0, 5, True, 1.0, "2"):
        with pytest.raises(ValueError, match="min_frames") as err:
            model.synthesize(text, mask, max_frames=4, min_frames=bad, target_length=3)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="loss"):
        TTSConfig(vocab_size=10, loss="l3")
    with pytest.raises(ValueError, match="unknown TTS preset"):
        TTSConfig.preset("huge", 10)
    with pytest.raises(ValueError, match="no causal"):
        TransformerTTS(TTSConfig.preset("tiny", 10), "dec=linformer")
    with pytest.raises(TypeError, match="Seq2SeqCache"):
        model.decode_step(mel[:, :1], object())


@pytest.mark.parametrize("spec, grows", [("softmax", True), ("leap", False),
                                         ("cosformer", False)])
def test_decoder_state_constant_for_the_linear_family(spec, grows):
    """The linear family's cache holds the same bytes whatever the length decoded (and
    the room reserved for it); softmax's holds keys and values for every frame."""
    model = _model(spec)
    text, mask, _, _ = _batch(B=1, S=5)
    enc = model.encode(text, mask)
    sizes = {}
    with torch.no_grad():
        for max_length in (8, 512):
            cache = model.new_decoder_cache(enc, target_length=40, max_length=max_length)
            frame = torch.zeros(1, 1, N_MELS)
            for _ in range(6):
                frame, _ = model.decode_step(frame, cache)
            assert cache.length == 6
            sizes[max_length] = cache.nbytes
    assert (sizes[512] > sizes[8]) == grows and (sizes[512] == sizes[8]) == (not grows)


@pytest.mark.parametrize(("spec", "r"), [("softmax", 2), ("leap", 3), ("cosformer", 2),
                                         ("enc=leap,dec=linear,cross=cosformer", 5)])
def test_frames_per_step_decoding_equals_forward(spec, r):
    """Group-by-group decoding equals the teacher-forced forward with ``r`` frames per
    step, including a last group padded past the item's length; cosFormer's ``M``
    counts groups."""
    model = _model(spec, frames_per_step=r)
    text, mask, mel, lengths = _batch()  # 12, 7 and 1 frames
    with torch.no_grad():
        full = model(text, mask, mel, lengths)
        assert full.mel.shape == (3, 12, N_MELS) and full.stop.shape == (3, 12)
        enc = model.encode(text, mask)
        cache = model.new_decoder_cache(enc, target_length=lengths, max_length=12)
        assert cache.target_length.tolist() == [-(-n // r) for n in lengths.tolist()]
        grouped = model.group(mel)
        inputs = torch.cat([torch.zeros(3, 1, r * N_MELS), grouped[:, :-1]], dim=1)
        steps = [model.decode_step(inputs[:, t:t + 1], cache) for t in range(grouped.shape[1])]
    mels = model.ungroup(torch.cat([m for m, _ in steps], 1))
    stops = torch.cat([s for _, s in steps], 1)
    assert stops.shape == (3, grouped.shape[1] * r)  # one stop logit per frame
    for b in range(3):
        n = int(lengths[b])
        torch.testing.assert_close(mels[b, :n], full.mel[b, :n], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(stops[b, :n], full.stop[b, :n], atol=2e-5, rtol=1e-4)
    assert torch.equal(model.ungroup(model.group(mel))[:, :12], mel)


def test_frames_per_step_loss_and_synthesis():
    r = 3
    model = _model("leap", frames_per_step=r, stop_pos_weight=2.0)
    text, mask, mel, lengths = _batch()  # 12, 7, 1 frames
    losses = model.loss(text, mask, mel, lengths)
    out = model(text, mask, mel, lengths)
    stop = pre = 0.0
    for b, n in enumerate([12, 7, 1]):
        target = torch.zeros(n)
        target[-1] = 1.0
        x = out.stop[b, :n]
        stop += (-(2.0 * target * F.logsigmoid(x) + (1 - target) * F.logsigmoid(-x))).sum()
        pre += (out.mel[b, :n] - mel[b, :n]).abs().sum()
    torch.testing.assert_close(losses["stop_loss"], stop / 20)
    torch.testing.assert_close(losses["mel_loss"], pre / (20 * N_MELS))
    post, n = model.synthesize(text, mask, max_frames=7, min_frames=7)
    assert post.shape == (3, 7, N_MELS) and n.tolist() == [7, 7, 7]  # cut inside group 3
    with torch.no_grad():
        model.stop_linear.bias.fill_(20.0)  # every frame says "stop"
        model.stop_linear.weight.zero_()
    for min_frames, want in ((1, 1), (4, 4), (5, 5)):  # exact to the frame, not the group
        post, n = model.synthesize(text, mask, max_frames=9, min_frames=min_frames)
        assert n.tolist() == [want] * 3 and post.shape[1] == want
    with pytest.raises(ValueError, match="frames_per_step must be a positive int"):
        TTSConfig.preset("tiny", 20, frames_per_step=0)


@pytest.mark.parametrize("spec,r", [("softmax", 1), ("leap", 3),
                                    ("enc=leap,dec=linear,cross=softmax", 2),
                                    ("cosformer", 1)])
def test_fused_step_synthesizes_what_the_eager_step_does(spec, r):
    """The compiled step (traced by dynamo, run by its eager backend in the suite:
    tests/conftest.py), compiled by ``warm_up``, padding in the batch: the eager frames
    and lengths, from one graph. cosFormer's weights depend on lengths: not covered,
    decoded eagerly."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    model = _model(spec, frames_per_step=r)
    text, mask, _, _ = _batch()
    kw = dict(max_frames=10, target_length=10)
    want, n_want = model.synthesize(text, mask, compile_step=False, **kw)
    assert model.warm_up() == (spec != "cosformer")
    step = model.fused_step()
    before = step.steps
    got, n_got = model.synthesize(text, mask, **kw)
    assert step.compiled == (spec != "cosformer")
    assert step.steps - before == model.steps(int(n_want.max()))  # one call per group
    assert n_got.tolist() == n_want.tolist()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # graphs: the warm-up's (batch 1) and one for batch 3; none per position or capacity
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 2 * (spec != "cosformer")
    model.synthesize(text, mask, max_frames=13, target_length=13)
    assert counters["stats"]["unique_graphs"] == graphs
    with pytest.raises(TypeError, match="compile_step"):
        model.synthesize(text, mask, compile_step=1, **kw)
