"""Paired folders into one manifest: `baton data manifest --pair noisy=DIR --pair clean=DIR`.

Denoising, enhancement and separation data come as parallel folders holding one file per item
under the same relative path (VoiceBank-DEMAND's `noisy_trainset_wav/p232_001.wav` and
`clean_trainset_wav/p232_001.wav`). Each relative path found in every folder becomes one manifest
item whose `audio` names the files; `AudioDataset` then reads all of them at the same offset, so a
random crop of the noisy file lines up with the clean one sample for sample.

A path missing from a folder, or files of one item that differ in sample rate, channels or
length, are reported (not raised): they would train on misaligned audio.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import DataError
from .audio import AudioInfo, audio_info
from .manifest import RESERVED_STREAMS, AudioMeta, ScanReport, find_audio_files


def scan_pairs(folders: Mapping[str, str | Path], *, jobs: int | None = None) -> ScanReport:
    """One entry per relative path present in every folder of `folders` (stream name -> folder),
    in sorted order; its `path`, rate, channels and duration are the first stream's.

    Raises:
        DataError: fewer than two streams, a reserved or repeated name, or a folder that is not one.
    """
    if len(folders) < 2:
        raise DataError("pairing needs two streams or more, e.g. --pair noisy=noisy_wav/ --pair clean=clean_wav/")
    roots: dict[str, Path] = {}
    for name, folder in folders.items():
        if not name.isidentifier() or name in RESERVED_STREAMS:
            raise DataError(f"stream name '{name}' must be a word other than {', '.join(RESERVED_STREAMS)}, e.g. noisy or clean")
        if not Path(folder).is_dir():
            raise DataError(f"{folder} (stream '{name}') is not a folder; give the folder that holds its audio files")
        roots[name] = Path(folder)
    found = {name: {path.relative_to(root): path for path in find_audio_files(root)} for name, root in roots.items()}
    every = sorted(set().union(*(set(files) for files in found.values())))
    failures: list[tuple[str, str]] = []
    complete = []
    for relative in every:
        absent = [name for name in roots if relative not in found[name]]
        if absent:
            present = next(found[name][relative] for name in roots if relative in found[name])
            failures.append((str(present), f"no {relative} under {', '.join(str(roots[n]) for n in absent)}"))
        else:
            complete.append(relative)

    def probe(relative: Path) -> AudioMeta | tuple[str, str]:
        paths = {name: found[name][relative] for name in roots}
        infos: dict[str, AudioInfo] = {}
        for name, path in paths.items():
            try:
                infos[name] = audio_info(path)
            except DataError as exc:
                return (str(path), str(exc))
        first_name, first = next(iter(infos.items()))
        if first.frames == 0:
            return (str(paths[first_name]), "no audio frames (zero-length)")
        for name, info in infos.items():
            shape, expected = (info.sample_rate, info.channels, info.frames), (first.sample_rate, first.channels, first.frames)
            if shape != expected:
                return (str(paths[name]), f"{info.sample_rate} Hz, {info.channels} channel(s), {info.frames} frames "
                                          f"where {paths[first_name]} has {first.sample_rate} Hz, {first.channels}, {first.frames}")
        return AudioMeta(
            path=str(paths[first_name].resolve()),
            duration=first.duration,
            sample_rate=first.sample_rate,
            channels=first.channels,
            audio={name: str(path.resolve()) for name, path in paths.items()},
        )

    jobs = jobs or min(32, (os.cpu_count() or 1) * 4)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(probe, complete))
    entries = [r for r in results if isinstance(r, AudioMeta)]
    failures += [r for r in results if not isinstance(r, AudioMeta)]
    return ScanReport(entries=entries, failures=failures)
