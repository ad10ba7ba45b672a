"""The Brain's run options: SpeechBrain's names and defaults, read into the engine's config.

A SpeechBrain script passes `run_opts` (a dict, usually from `parse_arguments(sys.argv[1:])`)
and `hparams` to its Brain. Each option comes from `run_opts`, else from `hparams` under the same
name, else from the default below, as in SpeechBrain. The engine does not read these names: they
are turned into the keys of `conf/solver/default.yaml` (`precision=bf16` -> `autocast`,
`grad_accumulation_factor` -> `optim.grad_accumulation`, `ckpt_interval_steps` ->
`checkpoint.every_updates`, ...), so a Brain runs the same loop as every other solver.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean

logger = logging.getLogger("baton.solver")

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "solver" / "default.yaml"

# SpeechBrain's run options and defaults, plus baton's own (marked).
RUN_OPT_DEFAULTS: dict[str, Any] = {
    "debug": False,
    "debug_batches": 2,
    "debug_epochs": 2,
    "debug_persistently": False,
    "device": "cpu",
    "data_parallel_backend": False,
    "distributed_launch": False,
    "distributed_backend": "nccl",
    "find_unused_parameters": False,
    "jit": False,
    "jit_module_keys": None,
    "compile": False,
    "compile_module_keys": None,
    "compile_mode": "reduce-overhead",
    "compile_using_fullgraph": False,
    "compile_using_dynamic_shape_tracing": False,
    "precision": "fp32",
    "eval_precision": "fp32",
    "auto_mix_prec": False,
    "bfloat16_mix_prec": False,
    "max_grad_norm": 5.0,
    "skip_nonfinite_grads": False,
    "nonfinite_patience": 3,
    "noprogressbar": False,
    "ckpt_interval_minutes": 0,
    "ckpt_interval_steps": 0,
    "grad_accumulation_factor": 1,
    "optimizer_step_limit": None,
    "tqdm_colored_bar": False,
    "tqdm_barcolor": {"train": "GREEN", "valid": "MAGENTA", "test": "CYAN"},
    "remove_vector_weight_decay": False,
    "profile_training": False,
    "profile_warmup": 5,
    "profile_steps": 5,
    "log_config": None,
    # baton's own
    "seed": 42,  # the training RNG stream (dropout, shuffling) starts from it; hparams' seed wins
    "accumulation_remainder": "step",  # a short last accumulation group: step | drop
    "output_folder": None,  # where solver.log and history.jsonl go (hparams' output_folder)
    "trust_checkpoints": False,  # load checkpoints with full unpickling (only files you trust)
    "distributed_strategy": "ddp",  # several ranks: ddp (a copy each) | fsdp (shards, FSDP2)
    "fsdp_blocks": [],  # fsdp: class names of the blocks sharded as units of their own
}

PRECISIONS = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}


def resolve_run_opts(run_opts: Mapping[str, Any] | None, hparams: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every run option: from `run_opts`, else `hparams`, else the default (SpeechBrain's rule).

    Raises:
        ConfigError: a precision that does not exist, or a value of the wrong kind.
    """
    run_opts = dict(run_opts or {})
    hparams = hparams or {}
    unknown = sorted(set(run_opts) - set(RUN_OPT_DEFAULTS) - {"param_file"})
    for name in unknown:
        logger.warning("run_opts: unknown option '%s' ignored%s", name, did_you_mean(name, RUN_OPT_DEFAULTS))
    options = {}
    for name, default in RUN_OPT_DEFAULTS.items():
        if name in run_opts and run_opts[name] is not None:
            options[name] = run_opts[name]
        elif name in hparams:
            options[name] = hparams[name]
        else:
            options[name] = default
    if options["auto_mix_prec"]:  # SpeechBrain's older flags
        options["precision"] = "fp16"
    if options["bfloat16_mix_prec"]:
        options["precision"] = "bf16"
    for key in ("precision", "eval_precision"):
        if options[key] not in PRECISIONS:
            raise ConfigError(f"run option {key}={options[key]!r}; use fp32, fp16 or bf16")
    for key in ("grad_accumulation_factor", "nonfinite_patience", "debug_batches", "debug_epochs"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "nonfinite_patience" else 1):
            raise ConfigError(f"run option {key}={value!r}; it must be a whole number >= {0 if key == 'nonfinite_patience' else 1}")
    if options["jit"]:
        raise ConfigError("run option jit is not supported by baton: use --compile (torch.compile) instead")
    if options["data_parallel_backend"]:
        raise ConfigError("run option data_parallel_backend (DataParallel) is not supported: launch with torchrun for DDP")
    if options["accumulation_remainder"] not in ("step", "drop"):
        raise ConfigError(f"run option accumulation_remainder={options['accumulation_remainder']!r}; use step or drop")
    return options


def brain_config(options: Mapping[str, Any], base: Any = None) -> Any:
    """The engine config of a Brain: `base` (an XP's composed config) or the shared defaults,
    with the run options applied. Options given explicitly override the XP's keys."""
    from omegaconf import OmegaConf

    if base is None:
        cfg = OmegaConf.load(DEFAULT_CONFIG)
        cfg.solver = "brain"
        cfg.xp.folder = None if options["output_folder"] is None else str(options["output_folder"])
        cfg.dataset.drop_last = False  # SpeechBrain's loaders keep the last partial batch
    else:
        cfg = OmegaConf.create(OmegaConf.to_container(base, resolve=True))
    dtype = PRECISIONS[options["precision"]]
    cfg.device = str(options["device"])
    cfg.seed = int(options["seed"])
    cfg.compile = bool(options["compile"])
    cfg.autocast = dtype is not None
    if dtype is not None:
        cfg.autocast_dtype = dtype
    cfg.optim.grad_accumulation = int(options["grad_accumulation_factor"])
    cfg.optim.accumulation_remainder = str(options["accumulation_remainder"])
    cfg.optim.max_norm = float(options["max_grad_norm"]) if options["max_grad_norm"] else None
    if options["debug"]:  # a few batches per stage, a few epochs: does the recipe run at all?
        cfg.optim.updates_per_epoch = -(-int(options["debug_batches"]) // int(options["grad_accumulation_factor"]))
    minutes, steps = float(options["ckpt_interval_minutes"] or 0), int(options["ckpt_interval_steps"] or 0)
    cfg.checkpoint.every_seconds = minutes * 60 if minutes > 0 else None
    cfg.checkpoint.every_updates = steps if steps > 0 else None
    cfg.checkpoint.trusted = bool(options["trust_checkpoints"]) or bool(cfg.checkpoint.trusted)
    cfg.distributed.find_unused_parameters = bool(options["find_unused_parameters"])
    cfg.distributed.strategy = str(options["distributed_strategy"])
    cfg.distributed.fsdp.blocks = [str(b) for b in options["fsdp_blocks"] or []]
    cfg.logging.progress = not options["noprogressbar"]
    if options["profile_training"]:
        cfg.profiler.enabled = True
        cfg.profiler.warmup = int(options["profile_warmup"])
        cfg.profiler.active = int(options["profile_steps"])
    return cfg


def run_opts_from_config(cfg: Any) -> dict[str, Any]:
    """The run options an XP's composed config stands for (`baton run` builds Brains with them)."""
    precision = "fp32"
    if cfg.autocast:
        precision = "bf16" if str(cfg.autocast_dtype) == "bfloat16" else "fp16"
    every_seconds = cfg.checkpoint.every_seconds
    return {
        "device": str(cfg.device),
        "seed": int(cfg.seed),
        "compile": bool(cfg.compile),
        "precision": precision,
        "grad_accumulation_factor": int(cfg.optim.grad_accumulation),
        "accumulation_remainder": str(cfg.optim.accumulation_remainder),
        "max_grad_norm": float(cfg.optim.max_norm or 0.0),
        "ckpt_interval_minutes": float(every_seconds) / 60 if every_seconds else 0,
        "ckpt_interval_steps": int(cfg.checkpoint.every_updates or 0),
        "find_unused_parameters": bool(cfg.distributed.find_unused_parameters),
        "distributed_strategy": str(cfg.distributed.get("strategy", "ddp")),
        "fsdp_blocks": list((cfg.distributed.get("fsdp") or {}).get("blocks") or []),
        "noprogressbar": not bool(cfg.logging.progress),
        "trust_checkpoints": bool(cfg.checkpoint.trusted),
        "output_folder": cfg.xp.folder,
    }


def _bool_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(f"--{name}", default=None, action="store_true", help=help)


def parse_arguments(arg_list: Sequence[str] | None = None) -> tuple[str, dict[str, Any], str]:
    """SpeechBrain's command line: `train.py hparams.yaml [--run_opt value ...] [--key value ...]`.

    Returns:
        (hparams file, run options given on the command line, overrides as a YAML string for
        `load_hyperpyyaml`). Options not given are absent from run_opts, so hparams can set them.
    """
    import sys

    if arg_list is None:
        arg_list = sys.argv[1:]
    parser = argparse.ArgumentParser(description="Run a baton Brain recipe (SpeechBrain-style)")
    parser.add_argument("param_file", type=str, help="the HyperPyYAML hparams file")
    _bool_flag(parser, "debug", "run a few batches of a few epochs only")
    parser.add_argument("--debug_batches", type=int, default=None, help="batches per stage in debug mode")
    parser.add_argument("--debug_epochs", type=int, default=None, help="epochs in debug mode")
    _bool_flag(parser, "debug_persistently", "keep checkpoints and logs in debug mode")
    parser.add_argument("--log_config", type=str, default=None, help="a logging config file")
    parser.add_argument("--device", type=str, default=None, help="cpu, cuda or cuda:N")
    _bool_flag(parser, "data_parallel_backend", "not supported: use torchrun (DDP) instead")
    _bool_flag(parser, "distributed_launch", "kept for old scripts; torchrun's environment is detected")
    parser.add_argument("--distributed_backend", type=str, default=None, help="nccl or gloo")
    _bool_flag(parser, "find_unused_parameters", "DDP: allow parameters without gradients")
    parser.add_argument("--distributed_strategy", type=str, default=None, choices=["ddp", "fsdp"],
                        help="several ranks: ddp (a copy of the model each) or fsdp (FSDP2 shards)")
    parser.add_argument("--fsdp_blocks", type=str, nargs="+", default=None, help="fsdp: block classes sharded as units")
    _bool_flag(parser, "jit", "not supported: use --compile")
    _bool_flag(parser, "compile", "torch.compile the modules")
    parser.add_argument("--compile_mode", type=str, default=None, help="torch.compile mode")
    parser.add_argument("--precision", type=str, default=None, choices=sorted(PRECISIONS), help="training precision")
    parser.add_argument("--eval_precision", type=str, default=None, choices=sorted(PRECISIONS), help="evaluation precision")
    _bool_flag(parser, "auto_mix_prec", "same as --precision fp16")
    _bool_flag(parser, "bfloat16_mix_prec", "same as --precision bf16")
    parser.add_argument("--max_grad_norm", type=float, default=None, help="clip the global gradient norm (0: off)")
    _bool_flag(parser, "skip_nonfinite_grads", "zero non-finite gradients before stepping")
    parser.add_argument("--nonfinite_patience", type=int, default=None, help="non-finite losses in a row before stopping")
    _bool_flag(parser, "noprogressbar", "no progress bar")
    parser.add_argument("--ckpt_interval_minutes", type=float, default=None, help="checkpoint inside epochs every N minutes")
    parser.add_argument("--ckpt_interval_steps", type=int, default=None, help="checkpoint inside epochs every N updates")
    parser.add_argument("--grad_accumulation_factor", type=int, default=None, help="batches per optimizer update")
    parser.add_argument("--optimizer_step_limit", type=int, default=None, help="stop after this many updates")
    _bool_flag(parser, "tqdm_colored_bar", "kept for old scripts")
    _bool_flag(parser, "remove_vector_weight_decay", "no weight decay on vectors (norms, biases)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the training RNG stream")
    parser.add_argument("--accumulation_remainder", type=str, default=None, choices=["step", "drop"], help="a short last accumulation group")
    _bool_flag(parser, "trust_checkpoints", "load checkpoints with full unpickling (only files you trust)")
    _bool_flag(parser, "profile_training", "profile a few updates with torch.profiler (TensorBoard trace)")
    parser.add_argument("--profile_warmup", type=int, default=None, help="updates before profiling")
    parser.add_argument("--profile_steps", type=int, default=None, help="updates profiled")
    known, rest = parser.parse_known_args(list(arg_list))
    run_opts = {k: v for k, v in vars(known).items() if v is not None}
    param_file = run_opts.pop("param_file")
    overrides = _overrides_yaml(rest)
    if "seed" in run_opts:  # also the hparams' seed (output folders and __set_seed use it)
        overrides = "\n".join(filter(None, [overrides, f"seed: {run_opts['seed']}"]))
    return param_file, run_opts, overrides


def _overrides_yaml(args: Sequence[str]) -> str:
    """`--key value` and `--key=value` pairs as 'key: value' lines (HyperPyYAML overrides)."""
    lines, pending = [], None
    for arg in args:
        if arg.startswith("--"):
            if pending is not None:
                raise ConfigError(f"override --{pending} has no value; write --{pending} VALUE")
            key, eq, value = arg[2:].partition("=")
            if eq:
                lines.append(f"{key}: {value}")
            else:
                pending = key
        elif pending is not None:
            lines.append(f"{pending}: {arg}")
            pending = None
        else:
            raise ConfigError(f"unexpected argument '{arg}'; overrides are written --key value")
    if pending is not None:
        raise ConfigError(f"override --{pending} has no value; write --{pending} VALUE")
    return "\n".join(lines)


class RunOptions(dict[str, Any]):
    """The type of SpeechBrain's `run_opts`: a dict of the options given (so `run_opts["device"]`
    and `Brain(run_opts=...)` work as with a plain dict), with each option also readable as an
    attribute, falling back to its default, and `overridden_args`: the names the command line set.
    """

    def __init__(self, given: Mapping[str, Any] | None = None, overridden_args: Sequence[str] | None = None) -> None:
        given = dict(given or {})
        unknown = sorted(set(given) - set(RUN_OPT_DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown run option '{unknown[0]}'{_did_you_mean(unknown[0])}")
        super().__init__(given)
        self.overridden_args: set[str] = set(given if overridden_args is None else overridden_args)

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name in RUN_OPT_DEFAULTS:
            return RUN_OPT_DEFAULTS[name]
        raise AttributeError(f"no run option '{name}'{_did_you_mean(name)}")

    @classmethod
    def from_command_line_args(cls, arg_list: Sequence[str] | None = None) -> tuple[str, RunOptions, str]:
        """(hparams file, run options, overrides as YAML) from `train.py hparams.yaml [--opt v]
        [--key v]`, as `parse_arguments` gives them."""
        param_file, given, overrides = parse_arguments(arg_list)
        return param_file, cls(given), overrides


def _did_you_mean(name: str) -> str:
    return did_you_mean(name, RUN_OPT_DEFAULTS)
