"""The built-in dataset: labelled synthetic sounds, written as real WAV files on first use.

It exists so a fresh clone can train, evaluate and listen to an audio model with no download.
Every file is a pure function of (seed, split, index), so the same seed gives byte-identical
files on any machine. The classes overlap on purpose (notes and slow chirps share pitch
ranges, noise colours blur under additive noise at low SNR, fast pulse trains sound pitched)
so a classifier has something to learn beyond the first epoch.

Layout, under the data cache (`BATON_DATA_DIR`, else `./data_cache` in the working directory):

    synth/v<VERSION>-seed<seed>/{train,valid,test}.jsonl
    synth/v<VERSION>-seed<seed>/{train,valid,test}/<index>_<label>.wav

The folder is written under a temporary name and renamed into place, so a half-written
dataset is never visible and two processes racing to create it both end up using one copy.
Files and folders get the user's umask (e.g. 0o644 and 0o755), so a team can share the cache.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import temporary_name
from .audio import write_wav
from .manifest import AudioMeta, write_manifest
from .names import safe_filename
from .rng import derive_seed

VERSION = 1
SAMPLE_RATE = 16_000
MIN_DURATION, MAX_DURATION = 0.5, 3.0
SPLITS = {"train": 384, "valid": 64, "test": 64}
CLASSES = (
    "note_bright",
    "note_mellow",
    "chirp_up",
    "chirp_down",
    "noise_white",
    "noise_pink",
    "noise_brown",
    "pulses",
)


def data_dir() -> Path:
    """The data cache: `BATON_DATA_DIR`, else `./data_cache` in the working directory.

    It does not follow the XP root (`BATON_XP_DIR` often points to scratch space or /tmp,
    which is wiped and shared between users): point `BATON_DATA_DIR` at a folder to move it.
    """
    if os.environ.get("BATON_DATA_DIR"):
        return Path(os.environ["BATON_DATA_DIR"]).expanduser().absolute()
    return Path.cwd() / "data_cache"


def dataset_folder(root: str | Path | None = None, seed: int = 0) -> Path:
    base = Path(root) if root is not None else data_dir() / "synth"
    return base / f"v{VERSION}-seed{seed}"


def ensure_synth(root: str | Path | None = None, seed: int = 0) -> Path:
    """The dataset folder for `seed`, generating it first when it is not there yet."""
    folder = dataset_folder(root, seed)
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # A plain mkdir, not tempfile.mkdtemp: the folder is renamed into place and must get the
    # user's umask (0o777 less it, e.g. 0o755), not mkdtemp's private 0o700.
    tmp = temporary_name(folder)
    tmp.mkdir()
    try:
        generate(tmp, seed)
        os.rename(tmp, folder)
    except OSError:
        # Another process renamed its copy into place first; theirs is identical.
        if not folder.is_dir():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def manifest_path(split: str, root: str | Path | None = None, seed: int = 0) -> Path:
    """Path of a split's manifest, generating the dataset if needed."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; choose from {', '.join(SPLITS)}")
    return ensure_synth(root, seed) / f"{split}.jsonl"


def generate(folder: str | Path, seed: int) -> None:
    """Write every split's WAV files and manifest into `folder`."""
    folder = Path(folder)
    for split_id, (split, count) in enumerate(SPLITS.items()):
        (folder / split).mkdir(parents=True, exist_ok=True)
        entries = []
        for index in range(count):
            wav, label, extra = make_example(seed, split_id, index)
            path = folder / split / f"{index:04d}_{safe_filename(label)}.wav"
            write_wav(path, wav, SAMPLE_RATE)
            entries.append(
                AudioMeta(
                    path=str(path.resolve()),
                    duration=len(wav) / SAMPLE_RATE,
                    sample_rate=SAMPLE_RATE,
                    channels=1,
                    label=label,
                    extra=extra,
                )
            )
        write_manifest(folder / f"{split}.jsonl", entries)


def make_example(seed: int, split_id: int, index: int) -> tuple[np.ndarray, str, dict[str, float]]:
    """One example: (mono float waveform, label, extra manifest fields).

    Labels cycle through `CLASSES` so every split is balanced.
    """
    rng = np.random.default_rng(derive_seed(seed, split_id, index))
    label = CLASSES[index % len(CLASSES)]
    n = int(rng.uniform(MIN_DURATION, MAX_DURATION) * SAMPLE_RATE)
    clean = _envelope(rng, n) * _GENERATORS[label](rng, n)
    clean /= np.abs(clean).max() + 1e-9
    snr_db = float(rng.uniform(0.0, 30.0))
    noise = rng.standard_normal(n)
    noise *= np.sqrt(np.mean(clean**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    mix = clean + noise
    gain_db = float(rng.uniform(-24.0, -1.0))
    mix *= 10 ** (gain_db / 20) / (np.abs(mix).max() + 1e-9)
    return mix.astype(np.float32), label, {"snr_db": round(snr_db, 2), "gain_db": round(gain_db, 2)}


def _envelope(rng: np.random.Generator, n: int) -> np.ndarray:
    attack = max(1, int(rng.uniform(0.002, 0.15) * SAMPLE_RATE))
    release = max(1, int(rng.uniform(0.02, 0.4) * SAMPLE_RATE))
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    env[:attack] = np.linspace(0.0, 1.0, attack)
    env[n - release :] = np.linspace(1.0, 0.0, release)
    decay = rng.uniform(0.0, 3.0)  # some sounds sustain, some die away
    return env * np.exp(-decay * np.arange(n) / SAMPLE_RATE)


def _harmonics(rng: np.random.Generator, n: int, f0: float, weights: Callable[[int], float], odd_only: bool) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    vibrato = rng.uniform(0.0, 0.015) * np.sin(2 * np.pi * rng.uniform(4.0, 7.0) * t)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + vibrato)) / SAMPLE_RATE
    # exp(i*k*phase) by repeated complex multiplication: one multiply per harmonic instead of
    # one sine, which keeps generating the whole dataset within a few seconds.
    step = np.exp(1j * phase)
    partial = np.ones(n, dtype=np.complex128)
    out = np.zeros(n)
    for k in range(1, int(0.45 * SAMPLE_RATE / f0) + 1):
        partial *= step
        if odd_only and k % 2 == 0:
            continue
        out += weights(k) * (partial * np.exp(1j * rng.uniform(0, 2 * np.pi))).imag
    return out


def _note_bright(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = float(np.exp(rng.uniform(np.log(90.0), np.log(600.0))))
    return _harmonics(rng, n, f0, lambda k: 1.0 / k, odd_only=False)


def _note_mellow(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = float(np.exp(rng.uniform(np.log(120.0), np.log(900.0))))
    return _harmonics(rng, n, f0, lambda k: 1.0 / k**2, odd_only=rng.uniform() < 0.5)


def _chirp(rng: np.random.Generator, n: int, rising: bool) -> np.ndarray:
    start = float(np.exp(rng.uniform(np.log(150.0), np.log(1500.0))))
    ratio = float(rng.uniform(1.15, 4.0))  # slow sweeps are nearly notes
    end = start * ratio if rising else start / ratio
    freq = start * (end / start) ** (np.arange(n) / n)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    partials = int(rng.integers(1, 4))
    return np.sum([(0.5**k) * np.sin((k + 1) * phase) for k in range(partials)], axis=0)


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    size = 1 << (n - 1).bit_length()  # a power of two: FFTs of prime lengths are slow
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, d=1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    return np.fft.irfft(spectrum / freqs ** (exponent / 2), n=size)[:n]


def _pulses(rng: np.random.Generator, n: int) -> np.ndarray:
    rate = float(np.exp(rng.uniform(np.log(3.0), np.log(80.0))))  # above ~30 Hz it buzzes
    period = SAMPLE_RATE / rate
    times = np.arange(rng.uniform(0, period), n, period)
    times += rng.normal(0.0, 0.05 * period, size=len(times))
    out = np.zeros(n)
    positions = np.clip(times.astype(int), 0, n - 1)
    out[positions] = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0, size=len(positions))
    # Each click rings through a short decaying resonance, so clicks have a timbre.
    length = int(0.004 * SAMPLE_RATE)
    ring = np.exp(-np.arange(length) / (length / 4)) * np.cos(2 * np.pi * rng.uniform(500, 4000) * np.arange(length) / SAMPLE_RATE)
    return np.convolve(out, ring)[:n]


_GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "note_bright": _note_bright,
    "note_mellow": _note_mellow,
    "chirp_up": lambda rng, n: _chirp(rng, n, rising=True),
    "chirp_down": lambda rng, n: _chirp(rng, n, rising=False),
    "noise_white": lambda rng, n: _colored_noise(rng, n, 0.0),
    "noise_pink": lambda rng, n: _colored_noise(rng, n, 1.0),
    "noise_brown": lambda rng, n: _colored_noise(rng, n, 2.0),
    "pulses": _pulses,
}
