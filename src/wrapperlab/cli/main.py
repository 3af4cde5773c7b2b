"""``wrapperlab`` command line: parse, validate, call one function, print. No logic lives here.

Each setting's verbs live in its own module (cli/pcfg.py, cli/tracr.py, cli/stories.py, named by the setting
registry); ``reproduce`` and ``report`` in cli/reproduce.py, ``export`` in cli/export.py. The verbs that take a run (eval, prune, probe,
attention, diff, reft, resume) are routed by the run's kind to the module of the setting owning it.

Bad input, a damaged or unreadable file and a diverged run end with one line on stderr naming the field or the
file, and exit code 2; ``wrapperlab --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import sys
import traceback
from importlib import import_module
from typing import Callable, Sequence

from wrapperlab.cli.common import EXIT_USAGE, Parser
from wrapperlab.errors import UserError

#: verbs taking a run of any setting -> the argument naming it
RUN_VERBS = {"eval": "run", "prune": "run", "probe": "run", "attention": "run", "reft": "run", "diff": "run_a",
             "resume": "run"}


def _modules() -> list:
    """The verb-group modules: every setting's command line, then the reproduction verbs."""
    from wrapperlab.settings.registry import cli_modules

    generic = ("wrapperlab.cli.reproduce", "wrapperlab.cli.export", "wrapperlab.cli.audit")
    return [import_module(m) for m in (*cli_modules().values(), *generic)]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="wrapperlab", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in _modules():
        module.add_parsers(sub)
    return parser


def _commands() -> dict[str, Callable]:
    out: dict[str, Callable] = {}
    for module in _modules():
        out.update(module.COMMANDS)
    return out


def _run_verb(args) -> int:
    """A verb taking a run: find the run, then hand it to the command line of the setting that owns it."""
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.registry import cli_module, for_run_kind

    field = RUN_VERBS[args.command]
    store = RunStore(args.runs)
    ref = getattr(args, field)
    run = store.find(ref, field=field) if args.command == "resume" else store.resolve(ref, field=field)
    setting = for_run_kind(run.kind, field=field, ref=str(ref))
    return cli_module(setting.name).analyse(args.command, args, run)


def _one_line(error: BaseException) -> str:
    """What went wrong, in one line: a user error's own message; a file-system error's file and reason."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return (f"{error.filename or 'the disk'}: No space left on device; free some and run the same command again "
                "(a run resumes from its last checkpoint)")
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    if isinstance(error, UnicodeDecodeError):
        return f"not a text file ({error.reason} at byte {error.start})"
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    try:
        if args.command in RUN_VERBS:
            return _run_verb(args)
        return _commands()[args.command](args)
    except BrokenPipeError:  # e.g. `wrapperlab data sample | head` (an OSError, but no error)
        return 0
    except (UserError, OSError, UnicodeDecodeError) as e:  # bad input, a bad file, a full or read-only disk
        if args.debug:
            traceback.print_exc()
        print(f"wrapperlab: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        again = ("an audit keeps no checkpoints: run the same command again to start it over" if args.command == "audit"
                 else "run the same command again to resume from the last checkpoint")
        print(f"wrapperlab: interrupted; {again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
