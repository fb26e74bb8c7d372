"""The ``spoken_digits`` domain: "zero".."nine", 1 s at 16 kHz, in [-1, 1].

Embedded data is synthesised with eSpeak NG (GPL-3.0-or-later), the library and voice data bundled in
the ``espeakng-loader`` wheel, driven through ctypes (API: espeak-ng's ``speak_lib.h``). Every clip
draws its voice, variant, rate, pitch, gain, position in the window and white-noise SNR from one seeded
generator, so a seed fixes the dataset to the byte. The data is built once and cached in the artifact
store. ``--data-dir`` accepts Google Speech Commands or SC09 folders instead.
"""

from __future__ import annotations

import _ctypes
import ctypes
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ltrans.data.audio import N_SAMPLES, SAMPLE_RATE, fit_length, read_wav, resample
from ltrans.data.base import DATASETS, Domain, Examples, LoadRequest, Split, grouped_split, stratified_split
from ltrans.errors import UserError

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FORMAT_VERSION = 1  # bump when the synthesis recipe below changes: it is part of the cache key
DEFAULT_N_PER_CLASS = 1000  # 300 before 2026-12-07: the spoken VAE's draws need more (README, "How recognisable")
SYNTH_SEED = 0  # the embedded dataset is one fixed draw; the request's seed only picks the split
TEST_FRACTION = 0.2
# Voices that load through espeak_SetVoiceByName ("en-gb" does not: use "en"; ../shared/FACTS.md).
VOICES = ("en", "en-us", "en-GB-scotland", "en-GB-x-rp", "en-GB-x-gbclan", "en-029")
# Klatt variants use espeak's random generator too; it is seeded per clip, so they stay deterministic.
VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6)) + ("klatt", "klatt2")
RATE_WPM = (130, 220)  # below 130 a word may not fit in 1 s
PITCH = (20, 80)  # espeak base pitch, 0..100, 50 = normal
GAIN = (0.3, 0.9)  # peak amplitude of the word before noise
SNR_DB = (15.0, 40.0)  # white noise relative to the word's mean power
TRIM_DB = -40.0  # samples this far below the word's peak count as silence when trimming

_ESPEAK_RATE = 22050  # what espeak_Initialize returns for the bundled voices
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _RATE, _PITCH = 2, 1, 1, 3  # speak_lib.h enums
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_LOCK = threading.Lock()  # libespeak-ng keeps global state: one synthesis at a time per process


def espeak_version() -> str:
    """The installed espeakng-loader's version, or "not installed" (the other domains work without it)."""
    try:
        return version("espeakng-loader")
    except PackageNotFoundError:
        return "not installed"


class _Espeak:
    """A freshly loaded libespeak-ng. espeak keeps state between utterances in C statics (output
    lengths drift even with a fixed random seed), so each clip gets its own load, unloaded by close()."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise UserError("the embedded spoken_digits are synthesised with eSpeak NG, whose package is "
                            "not installed: pip install espeakng-loader==0.2.4 (or give --data-dir with "
                            "SC09 / Speech Commands wav folders)") from e

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate != _ESPEAK_RATE:
            raise RuntimeError(f"espeak_Initialize returned {rate}, expected {_ESPEAK_RATE} Hz")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive while C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n_samples: int, events) -> int:
        if wav and n_samples > 0:  # NULL marks the end of synthesis; 0 samples is allowed mid-way
            self._chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
        return 0  # continue

    def say(self, text: str, voice: str, rate: int, pitch: int, seed: int) -> np.ndarray:
        """int16 samples at 22050 Hz."""
        status = self._lib.espeak_SetVoiceByName(voice.encode())
        if status != 0:
            raise RuntimeError(f"espeak_SetVoiceByName({voice!r}) failed with status {status}")
        self._lib.espeak_SetParameter(_RATE, rate, 0)
        self._lib.espeak_SetParameter(_PITCH, pitch, 0)
        self._lib.espeak_ng_SetRandSeed(seed)
        self._chunks = []
        raw = text.encode() + b"\0"
        status = self._lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, 0, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth({text!r}) failed with status {status}")
        self._lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def close(self) -> None:
        self._lib.espeak_Terminate()
        _ctypes.dlclose(self._lib._handle)  # the next load starts from the library's initial state


def synthesize(text: str, voice: str, rate: int, pitch: int, seed: int) -> np.ndarray:
    """``text`` spoken by espeak, float32 at SAMPLE_RATE; the same arguments give the same samples."""
    with _LOCK:
        engine = _Espeak()
        try:
            pcm = engine.say(text, voice, rate, pitch, seed)
        finally:
            engine.close()
    return resample(pcm.astype(np.float32) / 32768.0, _ESPEAK_RATE, SAMPLE_RATE)


def trim_silence(wave: np.ndarray, threshold_db: float = TRIM_DB) -> np.ndarray:
    """``wave`` without the leading and trailing samples below ``threshold_db`` of its peak."""
    loud = np.flatnonzero(np.abs(wave) > np.abs(wave).max(initial=0.0) * 10 ** (threshold_db / 20))
    return wave[loud[0] : loud[-1] + 1] if len(loud) else wave[:0]


def _clip(label: int, rng: np.random.Generator) -> np.ndarray:
    """One example of class ``label``: (N_SAMPLES,) float32 on the 16-bit grid."""
    voice = f"{rng.choice(VOICES)}+{rng.choice(VARIANTS)}"
    rate, pitch = int(rng.integers(*RATE_WPM, endpoint=True)), int(rng.integers(*PITCH, endpoint=True))
    gain, snr_db = rng.uniform(*GAIN), rng.uniform(*SNR_DB)
    espeak_seed, offset_fraction = int(rng.integers(2**31)), rng.uniform()
    noise = rng.standard_normal(N_SAMPLES)
    word = trim_silence(synthesize(CLASS_NAMES[label], voice, rate, pitch, espeak_seed))
    if len(word) > N_SAMPLES:
        word = fit_length(word)
    word = gain * word / np.abs(word).max()
    x = np.zeros(N_SAMPLES)
    start = int(offset_fraction * (N_SAMPLES - len(word)))
    x[start : start + len(word)] = word
    x += noise * np.sqrt(np.mean(word**2) / 10 ** (snr_db / 10))
    # Quantise like a 16-bit WAV, by the same operation as the cache's reader, so the cache is exact.
    return _from_pcm(np.round(np.clip(x, -1.0, 1.0) * 32767).astype(np.int16))


def _from_pcm(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / np.float32(32767)


def make_spoken_digits(n_per_class: int, seed: int) -> Examples:
    """``n_per_class`` synthetic clips per digit: x (n, N_SAMPLES) float32 in [-1, 1], y (n,) int64."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(len(CLASS_NAMES), dtype=np.int64), n_per_class)
    x = np.stack([_clip(int(label), rng) for label in y])
    return Examples(x, y)


def _load_embedded(request: LoadRequest) -> Examples:
    """The synthetic dataset from the artifact store, synthesised on the first call (~1 minute)."""
    from ltrans.artifacts import make_key
    from ltrans.files import load_arrays, save_arrays

    n_per_class = DEFAULT_N_PER_CLASS
    key = make_key(
        "dataset",
        "spoken_digits",
        n_per_class=n_per_class,
        seed=SYNTH_SEED,
        format_version=FORMAT_VERSION,
        espeakng_loader=espeak_version(),
    )

    def build(tmp_dir: Path) -> None:
        if sys.stderr.isatty():  # the one wait of this kind on a fresh machine: say what it is
            print(f"synthesising the spoken_digits dataset with eSpeak NG ({n_per_class * len(CLASS_NAMES):,} "
                  f"clips, ~1 minute, once; cached in {request.store.root})", file=sys.stderr, flush=True)
        data = make_spoken_digits(n_per_class, SYNTH_SEED)
        pcm = np.round(data.x * 32767).astype(np.int16)  # half the size of float32, and exact (see _clip)
        save_arrays(tmp_dir / "spoken_digits.npz", pcm=pcm, y=data.y)

    arrays = load_arrays(request.store.get_or_create(key, build) / "spoken_digits.npz")
    return Examples(_from_pcm(arrays["pcm"]), arrays["y"].astype(np.int64))


_LAYOUT = (
    "expected Speech Commands folders <dir>/zero/*.wav .. <dir>/nine/*.wav (optional testing_list.txt) "
    "or SC09's <dir>/{train,valid,test}/Zero_<speaker>_<n>.wav"
)


def _digit_files(data_dir: Path) -> list[tuple[str, int]]:
    """(path relative to data_dir, label) of every digit clip, in a fixed order."""
    found = []
    for label, word in enumerate(CLASS_NAMES):  # Speech Commands: one folder per word
        found += [
            (p.relative_to(data_dir).as_posix(), label) for p in sorted((data_dir / word).glob("*.wav"))
        ]
    for part in ("train", "valid", "test"):  # SC09: flat folders, the word is the file name's prefix
        for p in sorted((data_dir / part).glob("*.wav")):
            word = p.name.split("_", 1)[0].lower()
            if word in CLASS_NAMES:
                found.append((p.relative_to(data_dir).as_posix(), CLASS_NAMES.index(word)))
    return found


def _read_clip(path: Path) -> np.ndarray:
    wave, rate = read_wav(path)
    return fit_length(resample(wave, rate, SAMPLE_RATE)).astype(np.float32)


def _speaker(path: str) -> str:
    """The speaker of a clip: Speech Commands' ``<word>/<speaker>_nohash_<n>.wav``, SC09's
    ``<Word>_<speaker>_nohash_<n>.wav`` or ``<Word>_<speaker>_<n>.wav``; any other file is its own speaker."""
    stem = Path(path).stem
    if "_nohash_" in stem:
        return stem.split("_nohash_", 1)[0].rsplit("_", 1)[-1]
    parts = stem.split("_")
    return parts[1] if len(parts) == 3 and parts[0].lower() in CLASS_NAMES else path


def _test_mask(data_dir: Path, paths: list[str], y: np.ndarray, seed: int) -> np.ndarray:
    """Which clips are test: SC09's test/ folder, Speech Commands' testing_list.txt, else a seeded 20 % of
    every digit by whole speakers (the official split also keeps a speaker's takes on one side, so that a
    test score is not a score on voices seen in training). Validation clips (valid/, validation_list.txt)
    go to train: we tune on no split."""
    if any(p.startswith("test/") for p in paths):
        return np.array([p.startswith("test/") for p in paths])
    listing = data_dir / "testing_list.txt"
    if listing.is_file():
        listed = set(listing.read_text().split())
        return np.array([p in listed for p in paths])
    try:
        test = grouped_split(y, [_speaker(p) for p in paths], TEST_FRACTION, seed)[1]
    except ValueError as err:
        raise UserError(f"{data_dir}: no testing_list.txt, and a split by speaker fails: {err}; add a "
                        "testing_list.txt (one <word>/<file>.wav per line) or more speakers") from None
    mask = np.zeros(len(paths), dtype=bool)
    mask[test] = True
    return mask


def load_speech_commands(data_dir: Path, seed: int) -> Split:
    """Digit clips of a Speech Commands or SC09 folder, each resampled to 16 kHz and fit to 1 s."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: {'a file, not a folder' if data_dir.exists() else 'no such directory'}; {_LAYOUT}")
    files = _digit_files(data_dir)
    if not files:
        raise UserError(f"{data_dir}: no digit WAV files found; {_LAYOUT}")
    paths = [p for p, _ in files]
    y = np.array([label for _, label in files], dtype=np.int64)
    x = np.stack([_read_clip(data_dir / p) for p in paths])
    test = _test_mask(data_dir, paths, y, seed)
    if test.all() or not test.any():
        raise UserError(f"{data_dir}: the split leaves no {'train' if test.all() else 'test'} clips")
    rng = np.random.default_rng(seed)  # shuffle so that batches mix classes, as stratified_split does
    train_idx, test_idx = rng.permutation(np.flatnonzero(~test)), rng.permutation(np.flatnonzero(test))
    return Split(Examples(x[train_idx], y[train_idx]), Examples(x[test_idx], y[test_idx]))


def load(request: LoadRequest) -> Split:
    """The domain loader: the real dataset under ``request.data_dir``, else the cached synthetic one."""
    if request.data_dir is not None:
        return load_speech_commands(request.data_dir, request.seed)
    data = _load_embedded(request)
    train_idx, test_idx = stratified_split(data.y, TEST_FRACTION, request.seed)
    return Split(data.subset(train_idx), data.subset(test_idx))


DATASETS.register(
    "spoken_digits",
    Domain(
        name="spoken_digits",
        modality="audio",
        class_names=CLASS_NAMES,
        sample_shape=(N_SAMPLES,),
        source=f"synthesised with eSpeak NG (GPL-3.0-or-later) from espeakng-loader {espeak_version()}: "
        f"{len(VOICES)} English voices x {len(VARIANTS)} variants, {RATE_WPM[0]}-{RATE_WPM[1]} wpm, "
        f"white noise at {SNR_DB[0]:.0f}-{SNR_DB[1]:.0f} dB SNR; {DEFAULT_N_PER_CLASS} clips per digit",
        real_dataset="Speech Commands (<dir>/<word>/*.wav, testing_list.txt) or SC09 "
        "(<dir>/{train,valid,test}/<Word>_<speaker>_<n>.wav); resampled to 16 kHz, fit to 1 s",
        load=load,
    ),
)
