"""The one place that knows which settings exist: a spec's ``kind`` or a run's ``kind`` -> its :class:`Setting`,
and the command-line module of each.

Settings are imported on first use (``wrapperlab --help`` or ``wrapperlab data`` load none of them: the CLI
modules are known by name here). A fourth setting registers itself with :func:`register` (or gets a line in
``_BUILTIN``).
"""

from __future__ import annotations

from importlib import import_module

from wrapperlab.errors import ConfigError
from wrapperlab.settings.base import Setting

#: built-in settings: name -> (the module whose ``SETTING`` describes it, its command-line module)
_BUILTIN = {
    "pcfg": ("wrapperlab.settings.pcfg", "wrapperlab.cli.pcfg"),
    "tracr": ("wrapperlab.settings.tracr", "wrapperlab.cli.tracr"),
    "stories": ("wrapperlab.settings.stories", "wrapperlab.cli.stories"),
}
_LOADED: dict[str, Setting] = {}
_CLI: dict[str, str] = {name: cli for name, (_, cli) in _BUILTIN.items()}


def register(setting: Setting, cli: str | None = None) -> Setting:
    """Add (or replace) a setting, with its command-line module (``add_parsers(sub)``, ``COMMANDS``,
    ``analyse(command, args, run)``) if it has one; its run kinds must not collide with another setting's."""
    for other in all_settings():
        clash = set(other.run_kinds) & set(setting.run_kinds)
        if other.name != setting.name and clash:
            raise ConfigError("setting", setting.name, f"run kinds not already owned by {other.name} ({sorted(clash)})")
    _LOADED[setting.name] = setting
    if cli is not None:
        _CLI[setting.name] = cli
    return setting


def names() -> list[str]:
    return sorted({*_BUILTIN, *_LOADED})


def get(name: str) -> Setting:
    """The setting called ``name`` (a spec's ``kind``); an unknown name is one clear error."""
    if name not in _LOADED:
        if name not in _BUILTIN:
            raise ConfigError("kind", name, f"one of {names()}")
        _LOADED[name] = import_module(_BUILTIN[name][0]).SETTING
    return _LOADED[name]


def all_settings() -> list[Setting]:
    return [get(name) for name in names()]


def for_run_kind(kind: str, field: str = "run", ref: str | None = None) -> Setting:
    """The setting owning runs of ``kind`` (e.g. ``tracr-finetune`` -> tracr)."""
    for setting in all_settings():
        if kind in setting.run_kinds:
            return setting
    raise ConfigError(field, ref or kind, f"a run of a known setting ({', '.join(names())})")


def cli_modules() -> dict[str, str]:
    """Setting name -> its command-line module (without importing any setting)."""
    return dict(_CLI)


def cli_module(name: str):
    """The imported command-line module of setting ``name``."""
    if name not in _CLI:
        raise ConfigError("kind", name, f"a setting with a command line ({sorted(_CLI)})")
    return import_module(_CLI[name])


def resolve_entry(ref: str):
    """``"package.module:function"`` -> the function (how a setting names code in layers above it)."""
    module, _, attr = ref.partition(":")
    return getattr(import_module(module), attr)
