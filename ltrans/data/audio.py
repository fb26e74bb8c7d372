"""Audio representation: 1 s of 16 kHz mono <-> a (64, 64) log-mel spectrogram, and back by Griffin-Lim.

Everything here is a pure function of its arguments (torch/numpy/scipy only), plus WAV file I/O with the
standard ``wave`` module.

Spectrogram settings: a 1024-point Hann STFT (64 ms, 15.6 Hz bins) with hop 250 samples (15.6 ms) and
centre padding gives 1 + 16000 // 250 = 65 frames for 1 s; the last frame is centred on the final sample
and is mostly padding, so it is dropped to get exactly 64 frames. 64 HTK-scale mel filters, peak 1, span
20 Hz .. 8 kHz (Nyquist). The STFT is divided by the window sum, so a full-scale sine has magnitude 0.5
whatever ``N_FFT`` is, and log-mel values do not depend on the FFT size.

``to_model_space`` maps natural-log mel power linearly from [LOG_FLOOR, LOG_CEIL] to [0, 1] with fixed
constants (not data statistics), so one map serves every dataset and ``from_model_space`` inverts it.
"""

from __future__ import annotations

import math
import wave as wavefile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ltrans.errors import UserError
from ltrans.files import atomic_open

SAMPLE_RATE = 16000
N_SAMPLES = 16000  # 1 s clips
N_FFT = 1024
HOP = 250  # 64 frames per second after dropping the 65th (see module docstring)
N_MELS = 64
N_FRAMES = 64
F_MIN = 20.0
F_MAX = SAMPLE_RATE / 2
SPEC_SHAPE = (N_MELS, N_FRAMES)
EPS = 1e-10  # power floor inside the log: -100 dB re a full-scale sine's bin power (0.25)
# Fixed model-space range of ln(mel power), 20 nats = 87 dB. A full-scale sine gives about ln(0.37) = -1
# in its band; speech in the synthetic clips peaks near -3 and its noise floor lies at -12 .. -19, so the
# floor clamps only near-digital silence.
LOG_FLOOR = -20.0
LOG_CEIL = 0.0
GL_MOMENTUM = 0.99  # fast Griffin-Lim (Perraudin, Balazs & Sondergaard 2013, https://arxiv.org/abs/1308.3416)
FRONT_END_VERSION = 1  # bump when the code of ``to_model_space`` changes: cache keys hold ``front_end()``


def front_end() -> dict[str, float]:
    """The settings that fix a clip's model-space spectrogram (Griffin-Lim's do not): the cache keys of the
    models trained and the latents encoded on spectrograms hold them, since the raw waves' fingerprint does
    not change with them."""
    return {"version": FRONT_END_VERSION, "sample_rate": SAMPLE_RATE, "n_samples": N_SAMPLES, "n_fft": N_FFT,
            "hop": HOP, "n_mels": N_MELS, "n_frames": N_FRAMES, "f_min": F_MIN, "f_max": F_MAX, "eps": EPS,
            "log_floor": LOG_FLOOR, "log_ceil": LOG_CEIL}


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_band_centres(n_mels: int = N_MELS, f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """Centre frequencies in Hz of the ``n_mels`` filters, increasing: (n_mels,)."""
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    return edges[1:-1]


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> Tensor:
    """Triangular HTK-mel filters with peak 1 on the rfft bins: (n_fft // 2 + 1, n_mels) float32."""
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2}, got {f_min}, {f_max}")
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (n_freqs,)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))  # (n_mels + 2,)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)  # (n_freqs, n_mels)
    falling = (upper - freqs[:, None]) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    # A narrow low filter can fall between bins; give its nearest bin the full weight so that no band is
    # identically zero (that band's log-mel would be pinned at ln(EPS) whatever the input).
    empty = weights.max(axis=0) == 0
    weights[np.abs(freqs[:, None] - centre[empty]).argmin(axis=0), np.flatnonzero(empty)] = 1.0
    return torch.from_numpy(weights.astype(np.float32))


@lru_cache(maxsize=1)
def _filterbank() -> tuple[Tensor, Tensor]:
    """The module's filterbank (n_freqs, n_mels) and its pseudo-inverse (n_mels, n_freqs)."""
    fb = mel_filterbank(N_FFT, N_MELS, SAMPLE_RATE, F_MIN, F_MAX)
    return fb, torch.linalg.pinv(fb.double()).float()


@lru_cache(maxsize=1)
def _window() -> Tensor:
    return torch.hann_window(N_FFT, dtype=torch.float32)


def _stft(wave: Tensor) -> Tensor:
    """Complex STFT scaled by 1 / window sum: (n, N_SAMPLES) -> (n, n_freqs, N_FRAMES)."""
    window = _window()
    spec = torch.stft(wave, N_FFT, HOP, window=window, center=True, return_complex=True)
    return spec[..., :N_FRAMES] / window.sum()


def _istft(spec: Tensor) -> Tensor:
    """Inverse of ``_stft``: (n, n_freqs, N_FRAMES) -> (n, N_SAMPLES)."""
    window = _window()
    return torch.istft(spec * window.sum(), N_FFT, HOP, window=window, center=True, length=N_SAMPLES)


def _as_batch(wave: Tensor | np.ndarray) -> Tensor:
    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.ndim != 2 or wave.shape[1] != N_SAMPLES:
        raise ValueError(f"expected waves of shape (n, {N_SAMPLES}), got {tuple(wave.shape)}")
    return wave


def log_mel(wave: Tensor | np.ndarray) -> Tensor:
    """Natural-log mel power spectrogram: (n, N_SAMPLES) -> (n, N_MELS, N_FRAMES)."""
    power = _stft(_as_batch(wave)).abs().pow(2)  # (n, n_freqs, frames)
    mel = torch.einsum("nft,fm->nmt", power, _filterbank()[0])
    return torch.log(mel + EPS)


def to_model_space(wave: Tensor | np.ndarray) -> Tensor:
    """Log-mel mapped by fixed constants into [0, 1] (clamped): (n, N_SAMPLES) -> (n, 64, 64)."""
    return ((log_mel(wave) - LOG_FLOOR) / (LOG_CEIL - LOG_FLOOR)).clamp(0.0, 1.0)


def from_model_space(spec: Tensor) -> Tensor:
    """Inverse of ``to_model_space`` (exact inside the clamp range): (n, 64, 64) -> log-mel."""
    return spec * (LOG_CEIL - LOG_FLOOR) + LOG_FLOOR


def mel_to_magnitude(log_mel_spec: Tensor) -> Tensor:
    """Least-squares linear magnitude (n, n_freqs, frames) whose mel power is ``exp(log_mel_spec)``."""
    mel = (log_mel_spec.float().exp() - EPS).clamp(min=0.0)  # (n, n_mels, frames)
    power = torch.einsum("mf,nmt->nft", _filterbank()[1], mel)
    return power.clamp(min=0.0).sqrt()


def griffin_lim(log_mel_spec: Tensor, n_iter: int = 64, generator: torch.Generator | None = None) -> Tensor:
    """Waves (n, N_SAMPLES) whose log-mel approximates ``log_mel_spec`` (n, 64, 64), by fast Griffin-Lim.

    The initial phase is uniform random from ``generator``, or zero without one; either way the result
    is deterministic.
    """
    if tuple(log_mel_spec.shape[1:]) != SPEC_SHAPE:
        raise ValueError(f"expected (n, {N_MELS}, {N_FRAMES}), got {tuple(log_mel_spec.shape)}")
    magnitude = mel_to_magnitude(log_mel_spec)
    if generator is None:
        phase = torch.ones_like(magnitude, dtype=torch.complex64)
    else:
        angle = torch.rand(magnitude.shape, generator=generator) * (2 * math.pi)
        phase = torch.polar(torch.ones_like(angle), angle)
    estimate = magnitude * phase
    previous = estimate
    for _ in range(n_iter):
        # Project on consistent spectrograms, then on the target magnitude; then extrapolate (momentum).
        rebuilt = _stft(_istft(estimate))
        projected = magnitude * rebuilt / (rebuilt.abs() + 1e-12)
        estimate = projected + GL_MOMENTUM * (projected - previous)
        previous = projected
    return _istft(previous)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples (float32 in [-1, 1], mono; stereo is averaged) and the sample rate of a 16-bit PCM WAV."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder named like a WAV file; move or rename it")
    try:
        with wavefile.open(str(path), "rb") as f:
            channels, width, rate, n_frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            raw = f.readframes(n_frames)
    except (wavefile.Error, EOFError) as error:
        # EOFError carries no message: the file ends before its RIFF header does.
        detail = str(error) or "the file is too short for a WAV header"
        raise UserError(f"{path}: not a PCM WAV file readable by the wave module ({detail})") from None
    if width != 2 or channels not in (1, 2):
        raise UserError(
            f"{path}: {8 * width}-bit, {channels}-channel WAV; expected 16-bit PCM, mono or stereo"
        )
    if rate <= 0:
        raise UserError(f"{path}: the header gives a sample rate of {rate} Hz; the file is damaged")
    if len(raw) < n_frames * channels * width:
        raise UserError(f"{path}: truncated: the header promises {n_frames} frames, the file holds "
                        f"{len(raw) // (channels * width)}; copy or download it again")
    # Divide by 32767, as write_wav multiplies, so a round trip is exact to half a step; clip -32768.
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).mean(axis=1) / 32767.0
    return np.clip(samples, -1.0, 1.0).astype(np.float32), rate


def write_wav(path: str | Path, wave: np.ndarray | Tensor, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono 16-bit PCM, clipping to [-1, 1]; atomically (``ltrans.files.atomic_open``)."""
    path = Path(path)
    samples = np.asarray(torch.as_tensor(wave).detach().cpu(), dtype=np.float64).reshape(-1)
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with atomic_open(path) as raw, wavefile.open(raw, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def resample(wave: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Polyphase resampling by the reduced ratio (22050 -> 16000 Hz is up 320, down 441), float32."""
    if sr_from == sr_to:
        return np.asarray(wave, dtype=np.float32)
    g = math.gcd(sr_from, sr_to)
    from scipy.signal import resample_poly  # imported here: 1.1 s, paid only by resampled wav folders

    return resample_poly(np.asarray(wave, dtype=np.float64), sr_to // g, sr_from // g).astype(np.float32)


def fit_length(wave: np.ndarray, n: int = N_SAMPLES) -> np.ndarray:
    """Centre crop or symmetric zero-pad a 1-d wave to exactly ``n`` samples."""
    wave = np.asarray(wave)
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start : start + n]
    before = (n - len(wave)) // 2
    return np.pad(wave, (before, n - len(wave) - before))
