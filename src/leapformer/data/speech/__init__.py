"""Speech data: manifests, the MuST-C reader, the spoken-Bible stand-in, features.

- ``manifest``: the generic TSV manifest (``id, audio, offset, n_frames,
  src_text, tgt_text``), reader, writer and audio loading.
- ``mustc``: the MuST-C release layout (``en-XX/data/<split>/txt|wav``),
  talks cut into segments by the yaml offsets and durations.
- ``espeak``: espeak-ng synthesis and phonemisation through ctypes (the
  ``espeakng-loader`` wheel).
- ``spoken_bible``: English WEB verses spoken by espeak-ng, 16 kHz wavs and
  manifests for English speech -> Japanese text and -> English text.
- ``features``: Kaldi-compatible 80-bin log-mel filterbanks (speech
  translation, ASR) and Tacotron-style log-mel spectrograms (TTS);
  ``cmvn``: global mean/variance statistics.
- ``ljspeech``: the LJ Speech release (``metadata.csv`` + ``wavs/``).

Audio and YAML libraries (soundfile, librosa, PyYAML, espeakng-loader) are
imported only by the functions that need them (``pip install
'leapformer[speech]'``). docs/speech.md describes the data layout and commands.
"""

from leapformer.data.speech.cmvn import (
    CMVNAccumulator,
    GlobalCMVN,
    compute_cmvn,
    manifest_cmvn,
)
from leapformer.data.speech.espeak import phonemize, synthesize
from leapformer.data.speech.features import (
    FBANK_BINS,
    TTS_MEL,
    kaldi_fbank,
    n_fbank_frames,
    tts_log_mel,
)
from leapformer.data.speech.ljspeech import LJSPEECH_RATE, read_ljspeech
from leapformer.data.speech.manifest import (
    MANIFEST_COLUMNS,
    SpeechItem,
    load_audio,
    read_manifest,
    write_manifest,
)
from leapformer.data.speech.mustc import MUSTC_SPLITS, read_mustc
from leapformer.data.speech.spoken_bible import (
    DEFAULT_MAX_VERSES,
    build_spoken_bible,
    select_verses,
)

__all__ = [
    "DEFAULT_MAX_VERSES", "FBANK_BINS", "LJSPEECH_RATE", "MANIFEST_COLUMNS", "MUSTC_SPLITS",
    "TTS_MEL",
    "CMVNAccumulator", "GlobalCMVN", "SpeechItem", "build_spoken_bible", "compute_cmvn",
    "kaldi_fbank", "load_audio", "manifest_cmvn", "n_fbank_frames", "phonemize",
    "read_ljspeech", "read_manifest", "read_mustc",
    "select_verses", "synthesize", "tts_log_mel", "write_manifest",
]
