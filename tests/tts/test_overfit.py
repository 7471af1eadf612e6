"""A tiny TransformerTTS overfit on three short sine sweeps learns to stop: stop-token
decoding (free running, frame by frame on the cache) ends within 2 frames of each
utterance's true length, and its frames follow the targets."""

import numpy as np
import pytest
import torch

from leapformer.data.speech import compute_cmvn, tts_log_mel
from leapformer.models.tts import TransformerTTS, TTSConfig
from leapformer.tasks.tts.data import TextFrontend, collate

pytestmark = pytest.mark.usefixtures("one_thread")


def _sweep(f0: float, f1: float, seconds: float, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
            ).astype(np.float32)


def test_overfit_stops_at_the_right_frame():
    torch.manual_seed(0)
    texts = ["a b", "hello there", "a longer sentence here"]
    mels = [tts_log_mel(_sweep(200, 2000, s)) for s in (0.12, 0.2, 0.3)]
    cmvn = compute_cmvn(mels)
    front = TextFrontend.build(texts)
    text, mask, mel, lengths = collate([front.encode(t) for t in texts],
                                       [cmvn(m) for m in mels])
    cfg = TTSConfig.preset("tiny", front.vocab_size, prenet_dropout=0.0)
    model = TransformerTTS(cfg, "softmax")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(350):
        loss = model.loss(text, mask, mel, lengths)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    post, n = model.synthesize(text, mask, max_frames=60)
    assert (n - lengths).abs().max() <= 2, (n.tolist(), lengths.tolist())
    for b in range(3):
        k = int(min(n[b], lengths[b]))
        assert float((post[b, :k] - mel[b, :k]).abs().mean()) < 0.3
