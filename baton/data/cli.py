"""`baton data ...`: make the built-in dataset, or a manifest from a folder of audio files.

The `baton` dispatcher calls `add_arguments` and `main`; `python -m baton.data.cli` runs the
same thing on its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # One flat parser rather than sub-parsers: the `baton` dispatcher parses intermixed
    # arguments, which argparse does not allow together with sub-parsers.
    parser.add_argument("data_action", choices=("synth", "manifest"), metavar="ACTION",
                        help="synth: write the built-in dataset (WAV + manifests); "
                             "manifest: scan FOLDER (wav/flac/ogg) into a jsonl manifest")
    parser.add_argument("folder", type=Path, nargs="?", help="manifest: folder to scan recursively")
    parser.add_argument("-o", "--output", type=Path, help="manifest: the manifest to write (.jsonl)")
    parser.add_argument("--pair", action="append", metavar="NAME=DIR", default=[],
                        help="manifest: a stream of paired files (repeat: --pair noisy=DIR --pair clean=DIR); "
                             "files at the same relative path in every DIR become one item")
    parser.add_argument("--label-from-parent", action="store_true",
                        help="manifest: label each file with the name of the folder that holds it")
    parser.add_argument("--jobs", type=int, default=None, help="manifest: parallel readers (default: 4 per core)")
    parser.add_argument("--no-progress", action="store_true", help="manifest: no progress bar")
    parser.add_argument("--root", type=Path, default=None,
                        help="synth: parent folder (default: <data cache>/synth; BATON_DATA_DIR sets the cache)")
    parser.add_argument("--seed", type=int, default=0, help="synth: same seed, same files (default 0)")


def main(args: argparse.Namespace) -> int:
    """Run the chosen action; returns the exit code.

    Raises:
        UserError: bad input (missing folder, nothing readable); the dispatcher prints it.
    """
    if args.data_action == "synth":
        return _synth(args)
    if args.pair:
        if args.folder is not None or args.output is None:
            raise UserError("`baton data manifest --pair NAME=DIR ...` takes no folder and needs -o FILE.jsonl, "
                            "e.g. `baton data manifest --pair noisy=noisy/ --pair clean=clean/ -o train.jsonl`")
        return _manifest(args)
    if args.folder is None or args.output is None:
        raise UserError("`baton data manifest` needs a folder and -o FILE.jsonl, e.g. `baton data manifest wavs/ -o train.jsonl`")
    return _manifest(args)


def _streams(pairs: list[str]) -> dict[str, Path]:
    streams: dict[str, Path] = {}
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep or not name or not folder:
            raise UserError(f"--pair {pair}: give NAME=DIR, e.g. --pair clean=clean_wav/")
        if name in streams:
            raise UserError(f"--pair {pair}: stream '{name}' is given twice; give each stream once")
        streams[name] = Path(folder)
    return streams


def _synth(args: argparse.Namespace) -> int:
    from . import synth

    folder = synth.dataset_folder(args.root, args.seed)
    existed = folder.is_dir()
    folder = synth.ensure_synth(args.root, args.seed)
    verb = "already there" if existed else "written"
    counts = ", ".join(f"{split} {count}" for split, count in synth.SPLITS.items())
    print(f"synthetic dataset {verb}: {folder} ({counts} files)")
    for split in synth.SPLITS:
        print(f"  {folder / (split + '.jsonl')}")
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from .manifest import scan_folder, write_manifest
    from .pairs import scan_pairs

    if args.pair:
        streams = _streams(args.pair)
        report = scan_pairs(streams, jobs=args.jobs)
        where = " and ".join(str(folder) for folder in streams.values())
    else:
        report = scan_folder(args.folder, label_from_parent=args.label_from_parent, jobs=args.jobs,
                             progress=not args.no_progress and sys.stderr.isatty())
        where = str(args.folder)
    if report.failures:
        what = "unpaired, mismatched or unreadable" if args.pair else "unreadable"
        print(f"{len(report.failures)} {what} file(s) skipped:", file=sys.stderr)
        for path, reason in report.failures:
            print(f"  {path}: {reason}", file=sys.stderr)
    if not report.entries:
        raise UserError(f"no readable audio (wav, flac, ogg) under {where}; check the folder(s)")
    write_manifest(args.output, report.entries)
    hours = sum(e.duration for e in report.entries) / 3600
    print(f"wrote {args.output}: {len(report.entries)} files, {hours:.2f} h")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="baton data", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    try:
        sys.exit(main(_parser.parse_intermixed_args()))
    except UserError as _error:
        print(f"error: {_error}", file=sys.stderr)
        sys.exit(_error.exit_code)
