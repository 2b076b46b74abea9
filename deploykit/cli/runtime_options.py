"""Click options made from the runtime options the targets declare (deploykit.runtimes.options).

Each declared option (a field made with ``runtimes.options.option``) becomes one click option: its flag, help,
type (an int with a minimum -> IntRange, choices -> Choice, a bool -> a flag; a bool that defaults to true is
turned off by its ``--no-...`` flag) and default. ``target_options`` adds every declared option in rank order,
so a new target's options appear on ``bench`` without an edit here; ``runtime_option`` adds one of them where a
command wants it, with that command's own help or default when it differs (gate's defaults come from the
baseline). ``runtime_options`` turns the parsed values back into a ``RuntimeOptions``.
"""

from __future__ import annotations

import builtins
import keyword

import click

from deploykit.cli.common import FINITE_FLOAT, FiniteFloatRange
from deploykit.runtimes.base import DEFAULT_TARGET
from deploykit.runtimes.options import OptionSpec, RuntimeOptions, declared_options


def param_name(spec: OptionSpec) -> str:
    """The click parameter (the command function's keyword) of a declared option: its flag in snake case, with a
    trailing underscore where that would shadow a Python builtin or keyword (--compile -> compile_)."""
    name = spec.flag.lstrip("-").replace("-", "_")
    return name + "_" if keyword.iskeyword(name) or hasattr(builtins, name) else name


def _spec(name: str) -> OptionSpec:
    for s in declared_options():
        if s.name == name:
            return s
    raise KeyError(f"no runtime option {name!r}")


def click_option(spec: OptionSpec, **overrides):
    """The click option of one declared runtime option; ``overrides`` replace click keywords (help, default,
    show_default, type) for a command that says it differently."""
    kwargs: dict = {"help": spec.help or None}
    if spec.type is bool:
        kwargs["is_flag"] = True
    else:
        choices = spec.choice_list()
        if choices:
            kwargs["type"] = click.Choice(list(choices))
        elif spec.min is not None:
            kwargs["type"] = (click.IntRange if spec.type is int else FiniteFloatRange)(min=spec.min)
        elif spec.type is float:
            kwargs["type"] = FINITE_FLOAT
        elif spec.type is not str:
            kwargs["type"] = spec.type
        kwargs["default"] = spec.default
        if spec.show_default:
            kwargs["show_default"] = True
    kwargs.update(overrides)
    return click.option(spec.flag, param_name(spec), **kwargs)


def runtime_option(name: str, **overrides):
    """Decorator: the declared runtime option ``name`` (a field name: threads, graph_opt, precision, ...)."""
    return click_option(_spec(name), **overrides)


def target_options(f=None, *, exclude: tuple[str, ...] = ()):
    """Decorator: every declared runtime option with a flag, in rank order, except those in ``exclude`` (a
    command that places them itself with ``runtime_option``)."""

    def deco(fn):
        for spec in reversed([s for s in declared_options() if s.flag and s.name not in exclude]):
            fn = click_option(spec)(fn)
        return fn

    return deco(f) if f is not None else deco


def target_option(*, multiple: bool = False, **overrides):
    """Decorator: ``-t/--target``, a target name from the registry ('deploykit targets' lists them); with
    ``multiple`` the parameter is ``targets`` (repeatable)."""
    kwargs: dict = {"default": (DEFAULT_TARGET,) if multiple else DEFAULT_TARGET, "show_default": True}
    decls = ("-t", "--target")
    if multiple:
        decls += ("targets",)
        kwargs["multiple"] = True
    kwargs.update(overrides)
    return click.option(*decls, **kwargs)


def runtime_options(params: dict, **values) -> RuntimeOptions:
    """The RuntimeOptions of a command's parsed parameters: every declared option found in ``params`` is taken
    out of it (a ``--no-...`` flag turns its option off), ``values`` are set as given (options the command
    takes by name, and those it sets itself such as cache_dir)."""
    for spec in declared_options():
        if spec.flag is None or spec.name in values:
            continue
        key = param_name(spec)
        if key in params:
            v = params.pop(key)
            values[spec.name] = (not v) if spec.negated else (bool(v) if spec.type is bool else v)
    return RuntimeOptions.from_settings(**values)


def given_runtime_values(params: dict) -> dict:
    """The declared runtime options a command's user set to other than their defaults, taken out of ``params``
    (by option name; a ``--no-...`` flag given is its option False). For commands whose options default to
    something else than the declarations (gate: the baseline's)."""
    out = {}
    for spec in declared_options():
        key = param_name(spec) if spec.flag else None
        if key is None or key not in params:
            continue
        v = params.pop(key)
        value = (not v) if spec.negated else v
        if value is not None and value != spec.default and not (spec.type is bool and v is False):
            out[spec.name] = value
    return out
