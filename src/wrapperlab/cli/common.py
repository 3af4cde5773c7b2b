"""What every verb group of the ``wrapperlab`` command shares: the one-line-error parser, runtime and run options,
``--set`` parsing, validation helpers and output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from wrapperlab.errors import ConfigError

EXIT_USAGE = 2
#: the profiles (runs/profiles.yaml) in a verb's --help
PROFILE_HELP = ("test (seconds) | quick (2 CPU cores, minutes: 2 blocks, counting, bf16 where the CPU has it natively) | families (4 blocks, "
                "all five task families, fp32) | paper (the paper's sizes, GPU); default: quick")
#: flags every training verb has, under their config names
COMMON = {"seed": "seed", "iters": "train.iters", "lr": "train.lr", "batch_size": "train.batch_size"}


def _says_something(default: Any) -> bool:
    """A default worth printing: not absent, not an off switch, not empty (0 is a value: ``is``, not ``==``)."""
    return not (default is None or default is False or default is argparse.SUPPRESS or default in ("", []))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help line (unless the help already says it, or there is none to say), and
    epilogs (the examples) kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text.lower() or not _says_something(default) or not action.option_strings:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage dump) with exit code 2, and shows defaults and
    examples in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        for action in self._actions:  # argparse prints nothing for an option without help: give its default a line
            if action.help is None and action.option_strings and _says_something(action.default):
                action.help = "(default: %(default)s)"
        return super().format_help()

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_examples(sub, examples: dict[str, list[str]]) -> None:
    """Put ``examples`` (verb -> command lines) at the end of each verb's --help."""
    for verb, lines in examples.items():
        sub.choices[verb].epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)


def key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:  # not a ValueError: argparse would let it out as a traceback
        problem = getattr(e, "problem", None) or type(e).__name__
        raise argparse.ArgumentTypeError(f"{key.strip()}: {value!r} is not a YAML value ({problem})") from None


def seed(text: str) -> int:
    """``--seed``: an integer numpy and torch both accept (0 <= seed < 2**63), refused by argparse otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**63), got {text}")
    return value


def runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime (not part of a run's id)")
    g.add_argument("--runs", default="runs", help="run store directory (default: ./runs)")
    g.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's). The summation order, so a weight's last bits, depend on "
                        "it (and on --device): a bit-identical rerun needs the same")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--tensorboard", metavar="DIR",
                   help="also mirror each computed run's metrics to TensorBoard event files in DIR/<run id> "
                        "(`tensorboard --logdir DIR`; pip install 'wrapperlab[tensorboard]')")


def analysis_device_arg(p: argparse.ArgumentParser) -> None:
    """``--device`` for a verb that runs a stored model without training it (checked by :func:`check_device`)."""
    p.add_argument("--device", default="cpu", help="where the model runs: cpu | cuda | cuda:N | mps "
                   "(not part of the stored result's key)")


def run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="quick", help=PROFILE_HELP)
    p.add_argument("--seed", type=seed)
    p.add_argument("--iters", type=int, help="training iterations")
    p.add_argument("--lr", help="learning rate (a number; for finetune also L, M, S = 1e-4, 1e-5, 1e-6)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast (quick picks bf16 where the CPU has a native bf16 path, else fp32; "
                        "--set train.precision=fp32|bf16|auto to choose)")
    p.add_argument("--set", dest="overrides", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="override any profile setting, e.g. --set train.answer_weight=2 --set model.d_model=96")
    runtime_args(p)


def positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(name, value, "a positive integer")


def overrides(args, mapping: dict[str, str]) -> dict[str, Any]:
    out = {}
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    if getattr(args, "bf16", False):
        out["train.precision"] = "bf16"
    out.update(dict(args.overrides))
    return out


def check_device(device: str) -> None:
    """``--device``: cpu, cuda, cuda:N (N below this machine's GPU count) or mps (Apple GPUs), refused in one line
    when this machine does not have it."""
    import re

    import torch

    if device == "cpu":
        return
    if re.fullmatch(r"cuda(:\d+)?", device):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError("device", device, f"a device this machine has ({count} CUDA devices; use --device cpu)")
        return
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device", device, "a device this machine has (no Apple MPS here; use --device cpu)")
        return
    raise ConfigError("device", device, "cpu, cuda, cuda:N or mps")


def runtime(args):
    from wrapperlab.training.config import Runtime

    if args.threads is not None and args.threads <= 0:
        raise ConfigError("threads", args.threads, "a positive integer")
    check_device(args.device)
    board = getattr(args, "tensorboard", None)
    if board:
        from pathlib import Path

        from wrapperlab.runs.mirror import check_tensorboard

        check_tensorboard()
        if Path(board).exists() and not Path(board).is_dir():
            raise ConfigError("tensorboard", board, "a directory (this is a file)")
        board = str(Path(board).resolve())  # workers of any executor write to the same place
    return Runtime(device=args.device, compile=args.compile, threads=args.threads, progress=not args.quiet,
                   tensorboard=board)


def int_list(name: str, text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(name, text, "comma-separated integers")


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_shortcut_args(p: argparse.ArgumentParser) -> None:
    """Options of a verb that is a shortcut over ``reproduce SPEC`` (``demo``, ``tracr study``)."""
    p.add_argument("--profile", default="quick", help=PROFILE_HELP)
    p.add_argument("--seeds", type=int, help="number of seeds (default: the spec's for this profile)")
    p.add_argument("--workers", type=int, default=1, help="local processes running ready nodes in parallel (default 1)")
    runtime_args(p)
