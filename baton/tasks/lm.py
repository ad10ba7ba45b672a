"""An audio language model over a trained codec's tokens, conditioned on attributes, scored by
a trained classifier: the AudioCraft pipeline (MusicGen-like) at CPU size.

The chain of XPs (docs/pipeline.md):

    compression XP  --//sig-->  LM XP (this task)  <--//sig--  classification XP

- `compression_model_checkpoint: //sig/SIG` names the codec. It is loaded frozen; audio
  becomes codes [K, frames] on the fly, or once from a token cache (`tokens.cache: true`): a
  fixed segment per item, or, where the split crops at random, each whole file, cropped anew
  in codes every epoch. The cache lives under `<xp root>/token_cache/<codec sig>-<weights>/`,
  so a different codec never reuses another's tokens.
- Each item's attributes come from its label: `label` (categorical) and `description` (text,
  the label in words). The `conditioner` config group chooses the conditioners that read them.
- `evaluate` conditions generation on the test items' labels. It decodes the codes with the
  codec and scores them with the classifier XP (`classifier_checkpoint`, as AudioCraft's
  metrics use a pretrained audio classifier), at each `evaluate.cfg_scales`:
  - `acc_cfg<s>`: how often the classifier finds the conditioning label;
  - `kld_cfg<s>`: KL divergence of class probabilities, real item against the sample
    generated for its label;
  - `fad_cfg<s>`: Fréchet distance between the classifier's embeddings of real and generated
    audio.
  It also reports `acc_real` (the classifier on real audio) and `acc_codec` (on audio through
  the codec alone): the ceilings the LM's samples can reach.
- `generate` writes `samples/<epoch>/<n>_<label>_cfg<s>.wav` for the first items of the
  generate split.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from .. import distrib
from ..atomic import write_bytes_atomic
from ..conditioners import ConditioningAttributes
from ..data.builders import audio_dataset, split_loaders
from ..data.collate import AudioBatch
from ..data.dataset import AudioDataset
from ..data.loader import build_loader
from ..data.rng import sample_generator
from ..errors import ConfigError
from ..metrics.averager import Averager
from ..models.codec import CompressionModel
from ..models.lm import CodesLM, lm_loss
from ..optim import build_lr_scheduler, build_optimizer
from ..solver.references import Reference, resolve
from ..solver.registry import register_solver
from ..solver.runtime import per_rank_batch_size
from ..solver.samples import SampleWriter
from ..solver.standard import StandardSolver
from .compression import CompressionSolver

logger = logging.getLogger("baton.solver")
SPLITS = ("train", "valid", "evaluate", "generate")


class CachedTokens(Dataset):
    """Items of a token cache: {"codes": [K, frames], "label": int}."""

    def __init__(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        self.codes, self.labels = codes, labels

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"codes": self.codes[index].long(), "label": self.labels[index]}


class CroppedTokens(Dataset):
    """Items of a whole-file token cache, each cropped to `frames` codes at an offset drawn
    from (seed, epoch, index), as `AudioDataset` draws its audio crops: a new crop of every
    file each epoch, and the same ones again in a resumed run."""

    def __init__(self, files: list[torch.Tensor], labels: torch.Tensor, frames: int, seed: int) -> None:
        self.files, self.labels, self.frames, self.seed = files, labels, frames, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        codes = self.files[index]
        draw = float(torch.rand((), generator=sample_generator(self.seed, self.epoch, index)))
        offset = int(draw * (codes.shape[-1] - self.frames + 1))
        return {"codes": codes[:, offset:offset + self.frames].long(), "label": self.labels[index]}


@register_solver("lm")
class LMSolver(StandardSolver):
    model: CodesLM

    @classmethod
    def build_model_from_config(cls, cfg: Any, card: int | None = None) -> CodesLM:
        """The LM alone; `card` (codes per codebook) comes from the codec XP's config."""
        from omegaconf import OmegaConf

        if card is None:
            codec_cfg = cls.codec_reference(cfg, finished=False).cfg
            card = int(codec_cfg.model.bins)
        lm = cfg.lm
        conditioner = OmegaConf.to_container(cfg.conditioner, resolve=True) if cfg.get("conditioner") else None
        return CodesLM(
            card, int(lm.num_codebooks), dim=int(lm.dim), heads=int(lm.heads), layers=int(lm.layers),
            max_steps=int(lm.max_steps), dropout=float(lm.dropout), pattern=str(lm.pattern),
            conditioner=conditioner,  # type: ignore[arg-type]
        )

    @staticmethod
    def codec_reference(cfg: Any, finished: bool = True) -> Reference:
        return resolve(cfg.compression_model_checkpoint, cfg.xp.get("root"), "compression_model_checkpoint", finished=finished)

    # ----------------------------------------------------------------- build
    def build_dataloaders(self) -> None:
        data = self.cfg.dataset
        self.batch_size = per_rank_batch_size(int(data.batch_size))
        self.dataloaders.update(split_loaders(data, SPLITS, seed=int(self.cfg.seed), batch_size=self.batch_size))
        self.classes = list(self.dataloaders["train"].dataset.classes)
        if not self.classes:
            raise ConfigError("the LM's training manifest has no labels: its conditioning attributes come from them")

    def build_model(self) -> None:
        cfg = self.cfg
        self.codec_ref = self.codec_reference(cfg)
        codec = self.codec_ref.model(expect=CompressionSolver)
        assert isinstance(codec, CompressionModel)
        self.codec: CompressionModel = codec.to(self.device).requires_grad_(False)
        k = int(cfg.lm.num_codebooks)
        if k > self.codec.n_q:
            raise ConfigError(f"lm.num_codebooks={k} but the codec of XP {self.codec_ref.sig} has {self.codec.n_q}")
        self.model = self.build_model_from_config(cfg, card=self.codec.quantizer.bins).to(self.device)
        optimizer = build_optimizer(self.model, cfg.optim)
        scheduler = build_lr_scheduler(optimizer, cfg.schedule, self.total_updates)
        self.stepper = self.make_stepper(optimizer, scheduler, self.model)
        self.register_stateful("model", "stepper")
        self.register_best("model")
        self.register_ema("model")
        params = sum(p.numel() for p in self.model.parameters())
        logger.info("LM: %.2fM parameters over %d codebooks of %d codes (codec XP %s, %.0f frames/s)",
                    params / 1e6, k, self.model.card, self.codec_ref.sig, self.codec.frame_rate)
        if cfg.tokens.cache:
            for split in ("train", "valid"):
                self.dataloaders[split] = self.cached_loader(split)

    # ----------------------------------------------------------------- tokens
    def cached_loader(self, split: str) -> Any:
        """A loader over the split's codes, from the token cache (written on first use): fixed
        segments, or whole files cropped anew each epoch where the split crops at random."""
        audio = self.dataloaders[split].dataset
        data = self.cfg.dataset
        whole_files = bool(data[split].get("random_crop", data.random_crop))
        frames = self.frames_per_segment(audio) if whole_files else 0  # checked before any encoding
        path = self.token_cache_path(split, audio, whole_files)
        if distrib.rank() == 0 and not path.exists():
            self.write_token_cache(split, path, whole_files)
        distrib.barrier()
        stored = torch.load(path, weights_only=True)
        if whole_files:
            dataset: Dataset = CroppedTokens(stored["files"], stored["labels"], frames, int(self.cfg.seed))
        else:
            dataset = CachedTokens(stored["codes"], stored["labels"])
        train = split == "train"
        return build_loader(
            dataset, batch_size=self.batch_size, shuffle=train,
            seed=int(self.cfg.seed), collate_fn=default_collate, drop_last=train and bool(data.drop_last), pad=train,
        )

    def frames_per_segment(self, audio: AudioDataset) -> int:
        """Codes the codec makes of one segment of the split (what on-the-fly encoding gives)."""
        if audio.segment_frames is None:
            raise ConfigError("tokens.cache=true with random crops needs dataset.segment_duration; set it")
        return math.ceil(audio.segment_frames / self.codec.hop_length)

    def token_cache_path(self, split: str, dataset: Any, whole_files: bool = False) -> Path:
        """<xp root>/token_cache/<codec sig>-<weights>/<split>-<hash of what the tokens depend on>.pt"""
        data = self.cfg.dataset
        section = data[split]
        key = {
            "entries": [(str(e.path), e.duration) for e in dataset.entries],
            **{k: section.get(k, data[k]) for k in ("segment_duration", "sample_rate", "channels")},
            "num_codebooks": int(self.cfg.lm.num_codebooks), "classes": self.classes, "synth_seed": data.synth_seed,
        }
        if whole_files:  # every file whole, padded to a segment at least: the crop length is not in them
            key["whole_files"] = True
        digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
        root = Path(self.cfg.xp.root) / "token_cache" / f"{self.codec_ref.sig}-{self.codec_ref.which}"
        return root / f"{split}-{digest}.pt"

    def write_token_cache(self, split: str, path: Path, whole_files: bool = False) -> None:
        """Every item of the split, in order: one unsharded, unshuffled pass that drops nothing."""
        audio = self.dataloaders[split].dataset
        dtype = torch.int16 if self.model.card <= torch.iinfo(torch.int16).max else torch.int32
        if whole_files:
            stored = self.encode_whole_files(audio, dtype)
        else:
            loader = build_loader(audio, batch_size=self.batch_size, shuffle=False, seed=int(self.cfg.seed),
                                  drop_last=False, pad=False, rank=0, world_size=1)
            codes, labels = [], []
            for _, batch in self.loader_batches(loader):
                codes.append(self.encode(batch.wav.to(self.device)).to(dtype).cpu())
                labels.append(batch.labels.cpu())
            stored = {"codes": torch.cat(codes), "labels": torch.cat(labels)}
        buffer = io.BytesIO()
        torch.save(stored, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buffer.getvalue())
        logger.info("token cache: %d %s items of codec XP %s written to %s", len(stored["labels"]), split,
                    self.codec_ref.sig, path)

    @torch.no_grad()
    def encode_whole_files(self, audio: AudioDataset, dtype: torch.dtype) -> dict[str, Any]:
        """Each file encoded alone, whole (zero-padded to one segment when shorter, as the
        audio crops are): {"files": [[K, frames_i]], "labels": [N]}."""
        whole = AudioDataset(audio.entries, sample_rate=audio.sample_rate, channels=audio.channels,
                             segment_duration=None, classes=audio.classes, seed=audio.seed)
        shortest = audio.segment_frames or 0
        files, labels = [], []
        for index in range(len(whole)):
            item = whole[index]
            if item.label is None:
                raise ConfigError(f"{audio.entries[index].path} has no label in the manifest; the LM's attributes come from labels")
            wav = torch.nn.functional.pad(item.wav, (0, max(0, shortest - item.wav.shape[-1])))
            files.append(self.encode(wav[None].to(self.device))[0].to(dtype).cpu())
            labels.append(item.label)
        return {"files": files, "labels": torch.tensor(labels)}

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio [B, C, T] -> the codec's first `lm.num_codebooks` codes [B, K, frames]."""
        return self.codec.encode(wav, int(self.cfg.lm.num_codebooks))

    def attributes(self, labels: torch.Tensor) -> list[ConditioningAttributes]:
        """Each item's attributes, from its label: `label` (categorical) and `description` (text)."""
        names = [self.classes[int(i)] for i in labels.tolist()]
        return [ConditioningAttributes(text={"description": name.replace("_", " ")}, categorical={"label": name})
                for name in names]

    def codes_and_attributes(self, batch: Any) -> tuple[torch.Tensor, list[ConditioningAttributes]]:
        if isinstance(batch, AudioBatch):
            batch = batch.to(self.device)
            return self.encode(batch.wav), self.attributes(batch.labels)
        return batch["codes"].to(self.device), self.attributes(batch["label"])

    # ----------------------------------------------------------------- stages
    def run_step(self, idx: int, batch: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        codes, attributes = self.codes_and_attributes(batch)
        if self.is_training:
            attributes = self.model.cfg_dropout(self.model.attribute_dropout(attributes))
        with self.autocast():
            loss, per_book = lm_loss(self.model, codes, attributes)  # through DDP when wrapped
        if self.is_training:
            metrics.update(self.stepper.step(loss))
        metrics["ce"] = loss
        metrics["ppl"] = torch.exp(loss.detach())
        for k, value in enumerate(per_book):
            metrics[f"ce_q{k + 1}"] = value
        return metrics

    def sample(self, attributes: list[ConditioningAttributes], frames: int, cfg_scale: float, seed: int) -> torch.Tensor:
        g = self.cfg.generate
        generator = torch.Generator().manual_seed(seed)
        with self.autocast():
            codes = self.model.generate(attributes, frames, temperature=float(g.temperature), top_k=int(g.top_k),
                                        top_p=float(g.top_p), cfg_scale=cfg_scale, generator=generator)
        return self.codec.decode(codes).float()

    def evaluate(self) -> dict[str, float]:
        if self.cfg.classifier_checkpoint is None:
            return {}
        from ..metrics.frechet import frechet_distance
        from ..models.classifier import AudioClassifier
        from .classification import ClassificationBrain

        reference = resolve(self.cfg.classifier_checkpoint, self.cfg.xp.get("root"), "classifier_checkpoint")
        model = reference.model(expect=ClassificationBrain)
        assert isinstance(model, AudioClassifier)
        classifier = model.to(self.device)
        names = list(audio_dataset(reference.cfg.dataset, "train", seed=0).classes)
        if int(reference.cfg.dataset.sample_rate) != self.codec.sample_rate:
            raise ConfigError(
                f"classifier XP {reference.sig} takes {reference.cfg.dataset.sample_rate} Hz audio, the codec "
                f"gives {self.codec.sample_rate} Hz; use a classifier trained at the codec's rate"
            )
        missing = [c for c in self.classes if c not in names]
        if missing:
            raise ConfigError(f"classifier XP {reference.sig} does not know the classes {missing}; train it on the same labels")
        to_classifier = torch.tensor([names.index(c) for c in self.classes], device=self.device)
        scales = [float(s) for s in self.cfg.evaluate.cfg_scales]
        average = Averager()
        real_embeddings: list[torch.Tensor] = []
        generated: dict[float, list[torch.Tensor]] = {s: [] for s in scales}
        limit = self.cfg.evaluate.num_samples
        for index, batch in self.loader_batches(self.dataloaders["evaluate"], None if limit is None else int(limit)):
            batch = batch.to(self.device)
            target = to_classifier[batch.labels]
            real = classifier.embed(batch.wav, batch.lengths)
            real_probs = classifier.head(real).softmax(-1)
            real_embeddings.append(real)
            codes = self.encode(batch.wav)
            through_codec = self.codec.decode(codes, batch.wav.shape[-1])
            metrics = {"acc_real": (real_probs.argmax(-1) == target).float().mean(),
                       "acc_codec": (classifier(through_codec, batch.lengths).argmax(-1) == target).float().mean()}
            attributes = self.attributes(batch.labels)
            for scale in scales:
                seed = (int(self.cfg.seed) * 1000 + index) * distrib.world_size() + distrib.rank()
                wav = self.sample(attributes, codes.shape[-1], scale, seed=seed)
                embedding = classifier.embed(wav[..., : batch.wav.shape[-1]], batch.lengths)
                probs = classifier.head(embedding).softmax(-1)
                generated[scale].append(embedding)
                name = f"cfg{scale:g}"
                metrics[f"acc_{name}"] = (probs.argmax(-1) == target).float().mean()
                metrics[f"kld_{name}"] = (real_probs * (real_probs.clamp_min(1e-8).log() - probs.clamp_min(1e-8).log())).sum(-1).mean()
            average.update(metrics, count=len(batch))
        results = average.result()
        real_all = distrib_gather(torch.cat(real_embeddings))
        for scale in scales:
            results[f"fad_cfg{scale:g}"] = frechet_distance(real_all, distrib_gather(torch.cat(generated[scale])))
        return results

    def generate(self) -> dict[str, float]:
        """Sample the first `generate.num_samples` test items' labels at each CFG scale (each
        item once over all ranks, see SampleWriter)."""
        limit = int(self.cfg.generate.num_samples)
        writer = SampleWriter(self.folder / "samples" / str(self.epoch), limit)
        for _, batch in self.loader_batches(self.dataloaders["generate"], limit):
            batch = batch.to(self.device)
            frames = -(-batch.wav.shape[-1] // self.codec.hop_length)
            names = [self.classes[int(i)] for i in batch.labels.tolist()]
            items = list(writer.items(len(batch), names))
            if items:
                attributes = self.attributes(batch.labels[[i for i, _, _ in items]])
                seed = int(self.cfg.seed) * 1000 + items[0][1]  # by the first item's position
                for scale in [float(s) for s in self.cfg.generate.cfg_scales]:
                    wav = self.sample(attributes, frames, scale, seed=seed)
                    for (_, _, stem), one in zip(items, wav, strict=True):
                        writer.write(f"{stem}_cfg{scale:g}", one.clamp(-1, 1), self.codec.sample_rate)
            if writer.full:
                break
        return {}


def distrib_gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, concatenated (a Fréchet distance needs all items at once)."""
    if not distrib.is_distributed():
        return x
    return torch.cat([t.to(x.device) for t in distrib.all_gather_object(x.cpu())])
