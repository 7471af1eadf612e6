"""espeak-ng speech synthesis through ctypes, on the library and voice data that the
PyPI wheel ``espeakng-loader`` ships (no system package needed).

The wheel holds ``libespeak-ng.so`` and its ``espeak-ng-data`` folder; its
``get_library_path()`` / ``get_data_path()`` give both. This module loads the
library once per process and drives espeak-ng's C API in synchronous mode
(``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)``, a sample callback set
with ``espeak_SetSynthCallback``, then ``espeak_Synth``): the callback
collects the 16-bit mono samples, at the library's native rate (22,050 Hz).

espeak-ng keeps global state (one voice, one set of parameters), so every
call holds a process-wide lock; separate processes each load their own copy.
It also carries some signal state from one utterance to the next (pitch
flutter, buffers): speaking the same text twice gives the same speech up to a
few samples (measured: lengths within 0.05%), not bit-identical samples.

- :func:`synthesize`: text -> ``(int16 samples, sample rate)`` with a voice,
  a speaking rate (words per minute, espeak's default 175) and a pitch
  (0-100, default 50).
- :func:`phonemize`: text -> IPA phonemes (espeak-ng's own phonemiser).
- :func:`espeak_version`: the library's version string.
"""

from __future__ import annotations

import ctypes
import logging
import threading

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PITCH", "DEFAULT_RATE", "DEFAULT_VOICE", "espeak_version", "phonemize",
           "synthesize"]

DEFAULT_VOICE = "en-us"
DEFAULT_RATE = 175
"""Words per minute (espeak-ng's default; it accepts 80-450)."""
DEFAULT_PITCH = 50
"""Base pitch, 0-100 (espeak-ng's default)."""

# espeak_AUDIO_OUTPUT, espeak_PARAMETER, espeak_POSITION_TYPE and flags (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_RATE, _PITCH = 1, 3
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_EE_OK = 0

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)
_LOCK = threading.Lock()


class _Espeak:
    """The loaded library, initialised once (use through :func:`_engine`)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "speech synthesis needs espeak-ng from the PyPI wheel 'espeakng-loader' "
                "(pip install 'leapformer[speech]')") from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                              ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate}) with the data "
                               f"folder {data.decode()}")
        self.lib = lib
        self.sample_rate = int(rate)
        self.chunks: list[np.ndarray] = []
        self.callback = _CALLBACK(self._collect)  # kept referenced: the C side holds it
        lib.espeak_SetSynthCallback(self.callback)
        self.voice: str | None = None
        self.params: dict[int, int] = {}
        log.debug("espeak-ng %s loaded, %d Hz", self.version(), self.sample_rate)

    def _collect(self, wav, n: int, events) -> int:
        if n > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # go on

    def version(self) -> str:
        return (self.lib.espeak_Info(None) or b"").decode()

    def set_voice(self, voice: str) -> None:
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ValueError(f"voice: espeak-ng has no voice {voice!r} (e.g. 'en-us', "
                                 "'en-gb', 'en-gb-x-rp')")
            self.voice = voice
            self.params = {}  # a new voice resets the parameters

    def set_param(self, which: int, value: int) -> None:
        if self.params.get(which) != value:
            if self.lib.espeak_SetParameter(which, value, 0) != _EE_OK:
                raise RuntimeError(f"espeak_SetParameter({which}, {value}) failed")
            self.params[which] = value


_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
            not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    return int(value)


def synthesize(text: str, *, voice: str = DEFAULT_VOICE, rate: int = DEFAULT_RATE,
               pitch: int = DEFAULT_PITCH) -> tuple[np.ndarray, int]:
    """Speak ``text``: ``(samples, sample_rate)``, mono int16 at espeak-ng's native rate
    (22,050 Hz). ``rate`` in words per minute (80-450), ``pitch`` 0-100. Plain text,
    UTF-8; no SSML. Raises ``ValueError`` for empty text or an unknown voice."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    if not isinstance(voice, str) or not voice:
        raise ValueError(f"voice must be an espeak-ng voice name such as 'en-us', got {voice!r}")
    rate = _check_int("rate", rate, 80, 450)
    pitch = _check_int("pitch", pitch, 0, 100)
    data = text.encode("utf-8")
    with _LOCK:
        eng = _engine()
        eng.set_voice(voice)
        eng.set_param(_RATE, rate)
        eng.set_param(_PITCH, pitch)
        eng.chunks = []
        err = eng.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                   None, None)
        chunks, eng.chunks = eng.chunks, []
    if err != _EE_OK:
        raise RuntimeError(f"espeak_Synth failed (error {err}) on {text[:40]!r}")
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return samples.astype(np.int16, copy=False), eng.sample_rate


def phonemize(text: str, *, voice: str = DEFAULT_VOICE) -> str:
    """IPA phonemes of ``text`` by espeak-ng's phonemiser (clauses joined by a space)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    buf = ctypes.create_string_buffer(text.encode("utf-8"))
    ptr = ctypes.c_void_p(ctypes.addressof(buf))
    out = []
    with _LOCK:
        eng = _engine()
        eng.set_voice(voice)
        while ptr.value:  # espeak advances the pointer clause by clause, NULL at the end
            res = eng.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA)
            if res:
                out.append(res.decode("utf-8").strip())
    return " ".join(p for p in out if p)


def espeak_version() -> str:
    """The loaded espeak-ng's version, e.g. ``"1.52.0"``."""
    with _LOCK:
        return _engine().version()
