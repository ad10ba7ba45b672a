"""baton's own metrics, by the name an evaluation lists them under (docs/metrics.md).

    si_snr         scale-invariant SNR, dB, torch (every item)
    mel            multi-scale log-mel L1 distance, torch (every item; lower is better)
    visqol         ViSQOL v3 audio mode (48 kHz), MOS-LQO 1..~4.73     extra: visqol
    visqol_speech  ViSQOL v3 speech mode (16 kHz, lattice model), 1..5  extra: visqol
    pesq           PESQ wideband (ITU-T P.862.2, 16 kHz), 1.04..4.64    extra: pesq
    stoi           STOI (pystoi, 10 kHz inside), 0..1                   extra: stoi
    dnsmos         DNSMOS P.835 overall (16 kHz, reference-free), 1..5  extra: dnsmos
    speaker_sim    cosine of Resemblyzer speaker embeddings (16 kHz)    extra: speaker

Each package-backed metric calls its package exactly as its README does, on the arrays
`ItemMetric.items` prepared, with the model its wheel carries: nothing is downloaded.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from .audio import MelDistance, si_snr
from .item_metrics import ItemMetric, Unscorable, register_metric


@register_metric("si_snr")
class SISNR(ItemMetric):
    """Scale-invariant SNR in dB (metrics/audio.py), on the batch's device."""

    costly = False

    def __call__(self, estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None,
                 sample_rate: int) -> torch.Tensor:
        return si_snr(estimate.float(), reference.float(), lengths).double()


@register_metric("mel")
class MelDistanceMetric(ItemMetric):
    """Multi-scale log-mel L1 distance (metrics/audio.py), on the batch's device."""

    costly = False
    higher_is_better = False

    def __init__(self, scales: list[int] | tuple[int, ...] = (256, 512, 1024, 2048), n_mels: int = 64) -> None:
        super().__init__()
        self.scales, self.n_mels = list(scales), int(n_mels)
        self._modules: dict[int, MelDistance] = {}

    def __call__(self, estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None,
                 sample_rate: int) -> torch.Tensor:
        if sample_rate not in self._modules:
            self._modules[sample_rate] = MelDistance(sample_rate, self.scales, self.n_mels)
        module = self._modules[sample_rate].to(estimate.device)
        if lengths is None:
            return module(estimate.float(), reference.float(), reduction="none").double()
        # Item by item, trimmed: the STFT's edge frames of a padded batch depend on what else
        # is in it, and an item's score must not (ranks batch items differently).
        return torch.cat([
            module(estimate[i : i + 1, ..., :n].float(), reference[i : i + 1, ..., :n].float(), reduction="none")
            for i, n in enumerate(lengths.tolist())
        ]).double()


@register_metric("visqol")
class ViSQOLAudio(ItemMetric):
    """ViSQOL v3 in audio mode (music and general audio): the SVR model its wheel carries, at
    48 kHz, as codec papers report it (DAC, EnCodec). Identical signals score about 4.73."""

    sample_rate = 48_000
    module, extra = "visqol", "visqol"
    mode = "audio"

    def load(self) -> Any:
        from visqol import VisqolApi

        api = VisqolApi()
        api.create(mode=self.mode, **self.create_options())
        return api

    def create_options(self) -> dict[str, Any]:
        return {}

    def score(self, estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
        try:
            return float(self.backend.measure_from_arrays(reference, estimate, sample_rate).moslqo)
        except (ValueError, IndexError) as exc:  # too short, or (speech mode) no active patch
            reason = str(exc) if isinstance(exc, ValueError) else "no patch of active signal found"
            raise Unscorable(
                f"metric '{self.name}' cannot score an item of {len(reference) / sample_rate:.2f} s "
                f"({reason}); ViSQOL needs about 1 s of signal: evaluate longer items, or drop "
                f"{self.name} from evaluate.metrics"
            ) from None


@register_metric("visqol_speech")
class ViSQOLSpeech(ViSQOLAudio):
    """ViSQOL v3 in speech mode at 16 kHz, with the deep-lattice mapping of the C++ release
    (its model is in the wheel; the runtime is the extra's ai-edge-litert)."""

    sample_rate = 16_000
    mode = "speech"

    def create_options(self) -> dict[str, Any]:
        return {"use_lattice_model": True}


@register_metric("pesq")
class PESQWideband(ItemMetric):
    """PESQ wideband (ITU-T P.862.2) at 16 kHz, MOS-LQO from 1.04 to 4.64."""

    sample_rate = 16_000
    module, extra = "pesq", "pesq"

    def score(self, estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
        from pesq import PesqError, pesq

        try:
            return float(pesq(sample_rate, reference, estimate, "wb"))
        except PesqError as exc:  # e.g. no utterance found in a silent reference
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise Unscorable(
                f"metric 'pesq' cannot score an item ({reason}); PESQ needs "
                "speech-like references of at least 0.25 s: drop pesq from evaluate.metrics for this data"
            ) from None


@register_metric("stoi")
class STOI(ItemMetric):
    """Short-time objective intelligibility (pystoi), 0 to 1. Scored at the input's rate:
    pystoi resamples to the 10 kHz of the reference implementation itself."""

    module, extra = "pystoi", "stoi"

    def score(self, estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
        from pystoi import stoi

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(stoi(reference, estimate, sample_rate, extended=False))
        if any("Not enough STFT frames" in str(w.message) for w in caught):
            # pystoi's placeholder 1e-5 would drag a mean down as if the item were unintelligible
            raise Unscorable(
                f"metric 'stoi' cannot score an item of {len(reference) / sample_rate:.2f} s (fewer than "
                "30 frames of 25.6 ms left once silent frames are removed); STOI needs about 0.8 s of "
                "non-silent reference: evaluate longer items, or drop stoi from evaluate.metrics"
            )
        return value


@register_metric("dnsmos")
class DNSMOS(ItemMetric):
    """DNSMOS P.835 overall quality (OVRL, 1 to 5) of the estimate alone, from the ONNX models
    `speechmos` carries; clips shorter than 9 s are looped to 9 s by the package."""

    sample_rate = 16_000
    module, extra = "speechmos.dnsmos", "dnsmos"
    uses_reference = False

    def score(self, estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
        from speechmos import dnsmos

        return float(dnsmos.run(np.clip(estimate, -1.0, 1.0), sample_rate)["ovrl_mos"])


@register_metric("speaker_sim")
class SpeakerSimilarity(ItemMetric):
    """Cosine similarity (-1 to 1) of the speaker embeddings of estimate and reference, from
    Resemblyzer's encoder (its weights are in the wheel), after its own preprocessing
    (loudness normalisation, long silences trimmed)."""

    sample_rate = 16_000
    module, extra = "resemblyzer", "speaker"

    def load(self) -> Any:
        from resemblyzer import VoiceEncoder

        return VoiceEncoder("cpu", verbose=False)

    def score(self, estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
        from resemblyzer import preprocess_wav

        embeddings = [self.backend.embed_utterance(preprocess_wav(wav, source_sr=sample_rate))
                      for wav in (estimate, reference)]
        return float(np.dot(*embeddings) / (np.linalg.norm(embeddings[0]) * np.linalg.norm(embeddings[1])))
