"""Codebook interleaving patterns: how K parallel streams of codes [K, T] become one sequence
a causal language model predicts step by step (MusicGen, Copet et al. 2023).

    delay  step s predicts codebook k at time s - k: every codebook in parallel, the k-th one
           k steps late, so it is predicted knowing the coarser codebooks of its frame.
           T + K - 1 steps.
    flat   one code per step, frame by frame, codebook by codebook: T * K steps (exact
           factorisation, K times longer).

A `Pattern` turns codes into (inputs, targets, mask) for training, and back. The input at a
step is what the previous step predicted; a slot with nothing to predict holds `special`.
"""

from __future__ import annotations

import torch

PATTERNS = ("delay", "flat")


class Pattern:
    def __init__(self, name: str, num_codebooks: int, special: int) -> None:
        if name not in PATTERNS:
            raise ValueError(f"unknown codebook pattern '{name}'; choose one of {', '.join(PATTERNS)}")
        self.name, self.num_codebooks, self.special = name, num_codebooks, special

    def num_steps(self, frames: int) -> int:
        return frames + self.num_codebooks - 1 if self.name == "delay" else frames * self.num_codebooks

    def positions(self, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[steps, K] frame index predicted by each (step, codebook) slot, and [steps, K] valid."""
        steps, k = self.num_steps(frames), self.num_codebooks
        step = torch.arange(steps)[:, None]
        books = torch.arange(k)[None, :]
        if self.name == "delay":
            frame = step - books
            valid = (frame >= 0) & (frame < frames)
        else:
            frame = (step // k).expand(steps, k)
            valid = (step % k) == books
        return frame.clamp(0, max(frames - 1, 0)), valid

    def build(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """codes [B, K, T] -> inputs [B, S, K], targets [B, S, K], valid [S, K]."""
        batch, k, frames = codes.shape
        frame, valid = self.positions(frames)
        frame, valid = frame.to(codes.device), valid.to(codes.device)
        gathered = codes.gather(2, frame.T[None].expand(batch, k, -1)).transpose(1, 2)  # [B, S, K]
        targets = torch.where(valid[None], gathered, torch.full_like(gathered, self.special))
        start = torch.full_like(targets[:, :1], self.special)
        inputs = torch.cat([start, targets[:, :-1]], dim=1)
        return inputs, targets, valid

    def revert(self, sequence: torch.Tensor, frames: int) -> torch.Tensor:
        """sequence [B, S, K] of predictions -> codes [B, K, T]."""
        frame, valid = self.positions(frames)
        batch = sequence.shape[0]
        codes = torch.full((batch, self.num_codebooks, frames), self.special, dtype=sequence.dtype, device=sequence.device)
        steps, books = valid.nonzero(as_tuple=True)
        codes[:, books.to(sequence.device), frame[steps, books].to(sequence.device)] = sequence[:, steps, books]
        return codes
