"""Neural audio compression, AudioCraft/EnCodec style: SEANet encoder, residual vector
quantizer, SEANet decoder, trained on a weighted sum of waveform L1, multi-scale mel distance,
negative SI-SNR and the quantizer's commitment loss (`losses.*`).

Why several terms: mel distance alone learns magnitudes with arbitrary phase (SI-SNR stays
near -25 dB); L1 alone collapses towards silence on noise-like audio; SI-SNR alone leaves the
output's scale free. Together they converge quickly, which a short CPU run needs.

`evaluate` reports the metrics of `evaluate.metrics` (SI-SNR and mel distance by default; ViSQOL,
PESQ, STOI, ... with their extras, docs/metrics.md) on the test split at each configured number of
codebooks (`evaluate.n_q`, i.e. bandwidth); `generate` writes original and reconstructed WAVs
under samples/<epoch>/, named `<n>_<label>_{original,reconstructed}.wav` with the label made a
safe file name (`baton.data.names.safe_filename`). An adversarial term is not part of this
task: `solver=gan/debug` shows adversarial training, written as config-driven steps.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import distrib
from ..data.builders import split_loaders
from ..data.collate import AudioBatch
from ..metrics.audio import MelDistance, si_snr
from ..metrics.suite import MetricSuite, worker_pool
from ..models.codec import CompressionModel, build_compression_model
from ..optim import build_lr_scheduler, build_optimizer
from ..solver.registry import register_solver
from ..solver.runtime import per_rank_batch_size
from ..solver.samples import SampleWriter
from ..solver.standard import StandardSolver

SPLITS = ("train", "valid", "evaluate", "generate")
METRICS = ("si_snr", "mel")  # what `evaluate.metrics: null` scores (the task's metrics before the key)
PICTURE_ITEMS = 4  # spectrogram pairs in overview.png


def masked_l1(estimate: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the valid samples only (padding is not signal)."""
    weights = mask[:, None, :].to(estimate.dtype).expand_as(estimate)
    return ((estimate - reference).abs() * weights).sum() / weights.sum().clamp_min(1)


@register_solver("compression")
class CompressionSolver(StandardSolver):
    model: CompressionModel

    @classmethod
    def build_model_from_config(cls, cfg: Any) -> CompressionModel:
        """The codec alone, from a config (its `model` section): what `build_model` trains and
        `baton.load_model` rebuilds from an XP's config.yaml."""
        return build_compression_model(cfg.model)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """The loop's keys, and `evaluate.metrics`: known names whose packages are installed."""
        super().check_config(cfg)
        cls.metric_suite(cfg)

    @classmethod
    def metric_suite(cls, cfg: Any, pool: Any = None, label: str = "") -> MetricSuite:
        """The metrics of one bandwidth's evaluation (mel at the training loss's scales)."""
        evaluate = cfg.evaluate
        names = METRICS if evaluate.metrics is None else list(evaluate.metrics)
        return MetricSuite(names, max_items=evaluate.metrics_items, pool=pool,
                           options={"mel": {"scales": list(cfg.losses.mel_scales)}}, label=label)

    def build_model(self) -> None:
        self.model = self.build_model_from_config(self.cfg).to(self.device)
        optimizer = build_optimizer(self.model, self.cfg.optim)
        scheduler = build_lr_scheduler(optimizer, self.cfg.schedule, self.total_updates)
        self.stepper = self.make_stepper(optimizer, scheduler, self.model)
        self.mel = MelDistance(self.model.sample_rate, scales=list(self.cfg.losses.mel_scales)).to(self.device)
        self.register_stateful("model", "stepper")
        self.register_best("model")
        self.register_ema("model")
        self.logger_info_model()

    def logger_info_model(self) -> None:
        import logging

        params = sum(p.numel() for p in self.model.parameters())
        logging.getLogger("baton.solver").info(
            "codec: %.2fM parameters, hop %d, %d codebooks, %.1f kbps at full bandwidth",
            params / 1e6, self.model.hop_length, self.model.n_q, self.model.bandwidth(),
        )

    def build_dataloaders(self) -> None:
        data = self.cfg.dataset
        batch_size = per_rank_batch_size(int(data.batch_size))
        self.dataloaders.update(split_loaders(data, SPLITS, seed=int(self.cfg.seed), batch_size=batch_size))

    def reconstruction_losses(self, batch: AudioBatch, n_q: int | None = None) -> dict[str, torch.Tensor]:
        x = batch.wav
        with self.autocast():
            out = self.model(x, n_q=n_q)
        y = out.y.float()
        losses = self.cfg.losses
        l1 = masked_l1(y, x, batch.mask())
        mel = self.mel(y, x, batch.lengths)
        sisnr = si_snr(y, x, batch.lengths).mean()
        loss = losses.l1 * l1 + losses.mel * mel - losses.sisnr * sisnr + losses.commit * out.commit_loss
        return {"loss": loss, "l1": l1, "mel": mel, "si_snr": sisnr, "commit": out.commit_loss,
                "bandwidth": torch.tensor(out.bandwidth)}

    def run_step(self, idx: int, batch: AudioBatch, metrics: dict[str, Any]) -> dict[str, Any]:
        batch = batch.to(self.device)
        result = self.reconstruction_losses(batch)
        if self.is_training:
            metrics.update(self.stepper.step(result["loss"]))
        metrics.update(result)
        return metrics

    def evaluate(self) -> dict[str, float]:
        """`evaluate.metrics` at each `evaluate.n_q`, as `<metric>_<kbps>kbps`.

        One pass over the test split: each batch is read once and coded at every bandwidth. The
        costly metrics score the first `evaluate.metrics_items` items, in
        `evaluate.metrics_workers` processes while the next batches are coded.
        """
        n_qs = list(self.cfg.evaluate.n_q or [None])
        pool = worker_pool(int(self.cfg.evaluate.metrics_workers))
        try:
            suites = {n_q: self.metric_suite(self.cfg, pool, self.bandwidth_label(n_q)) for n_q in n_qs}
            for _, batch in self.loader_batches(self.dataloaders["evaluate"]):
                batch = batch.to(self.device)
                for n_q in n_qs:
                    with self.autocast():
                        y = self.model(batch.wav, n_q=n_q).y.float()
                    suites[n_q].update(y, batch.wav, batch.lengths, self.model.sample_rate)
            results: dict[str, float] = {}
            for n_q, suite in suites.items():
                suffix = "" if n_q is None else f"_{self.model.bandwidth(n_q):g}kbps"
                results.update({f"{key}{suffix}": value for key, value in suite.result().items()})
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return results

    def bandwidth_label(self, n_q: int | None) -> str:
        return f"at {self.model.bandwidth(n_q):g} kbps"

    def generate(self) -> dict[str, float]:
        """Write original/reconstructed pairs of the first `generate.num_samples` test items
        (each once over all ranks, see SampleWriter)."""
        limit = int(self.cfg.generate.num_samples)
        writer = SampleWriter(self.folder / "samples" / str(self.epoch), limit)
        pairs: list[tuple[str, Any, Any]] = []
        for _, batch in self.loader_batches(self.dataloaders["generate"], limit):
            batch = batch.to(self.device)
            with self.autocast():
                y = self.model(batch.wav).y.float()
            labels = [info.label for info in batch.infos] if batch.infos is not None else None
            for i, _, stem in writer.items(len(batch), labels):
                length = int(batch.lengths[i])
                original, reconstructed = batch.wav[i, :, :length].cpu(), y[i, :, :length].clamp(-1, 1).cpu()
                writer.write(f"{stem}_original", original, self.model.sample_rate)
                writer.write(f"{stem}_reconstructed", reconstructed, self.model.sample_rate)
                self.log_pair(stem, original.numpy(), reconstructed.numpy())
                pairs.append((stem, original.numpy(), reconstructed.numpy()))
            if writer.full:
                break
        if self.cfg.generate.get("picture") and pairs and distrib.is_rank_zero():
            self.write_picture(writer.folder / "overview.png", pairs[:PICTURE_ITEMS])
        return {}

    def write_picture(self, path: Any, pairs: list[tuple[str, Any, Any]]) -> None:
        """overview.png beside the samples: this rank's first pairs as spectrograms, above the
        curves of SI-SNR and mel distance so far (`generate.picture`; it needs matplotlib: a run
        without it says so and goes on, since the samples are written)."""
        import logging

        from ..errors import UserError
        from ..loggers.overview import write_overview

        history = [*self.history, self.loop_state.epoch_results]
        evaluated = list(history[-1].get("evaluate", {}))
        panels = {
            "SI-SNR (dB, higher is better)": [("train", "si_snr"), ("valid", "si_snr")]
            + [("evaluate", key) for key in evaluated if key.startswith("si_snr")],
            "mel distance (lower is better)": [("train", "mel"), ("valid", "mel")]
            + [("evaluate", key) for key in evaluated if key.startswith("mel")],
        }
        try:
            write_overview(path, pairs, self.model.sample_rate, history, panels,
                           f"XP {self.folder.name}, epoch {self.epoch}: original | reconstruction at {self.model.bandwidth():g} kbps")
        except UserError as exc:
            logging.getLogger("baton.solver").warning("no overview.png: %s", exc)

    def log_pair(self, stem: str, original: Any, reconstructed: Any) -> None:
        """Both clips, and their log-mel spectrograms one above the other, to the trackers."""
        from ..loggers.spectrogram import spectrogram_image

        rate, log = self.model.sample_rate, self.result_logger
        if not log.tracking:
            return
        log.log_audio(f"generate/{stem}/original", original, rate, self.epoch)
        log.log_audio(f"generate/{stem}/reconstructed", reconstructed, rate, self.epoch)
        log.log_image(f"generate/{stem}/mel_original_above_reconstructed", spectrogram_image([original, reconstructed], rate), self.epoch)
