"""absl flags made from the settings' declarations (config.py), the parser every entry point uses,
and --help listing the project's flags by group.

Entry points define their flags (the run settings from here, their own options beside them) and
pass plain values on; library modules never read FLAGS. This module imports no TensorFlow itself;
the registries its choices come from may.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable

from absl import app, flags

from reid_tf import config
from reid_tf.settings import Declared, problem

FLAGS = flags.FLAGS
_GROUPS: list[tuple[str, int]] = []  # (--help title, number of flags defined before it)
_REQUIRED: set[str] = set()


def group(title: str) -> None:
    """The flags defined from here to the next call are listed under `title` by --help."""
    _GROUPS.append((title, len(list(FLAGS))))


def required(*names: str) -> None:
    """--help marks these flags as required."""
    _REQUIRED.update(names)


def _define(s: Declared) -> None:
    if s.type is bool:
        flags.DEFINE_boolean(s.name, s.default, s.text)
    elif s.type is str and s.choices and s.check is None:
        flags.DEFINE_enum(s.name, s.default, s.choices, s.text)
    elif s.type is tuple:
        flags.DEFINE_list(s.name, [str(v) for v in s.default], s.text)
    else:
        define = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}[s.type]
        bounds = {} if s.type is str else {"lower_bound": s.lower, "upper_bound": s.upper}
        define(s.name, s.default, s.text, **bounds)
    if s.type is tuple or (s.choices and s.type is not str) or s.check:
        flags.register_validator(s.name, lambda v, s=s: _parsed_problem(s, v) is None,
                                 f"--{s.name} must be {_parsed_problem(s, None) or 'valid'}")


def _parsed_problem(s: Declared, value) -> str | None:
    if value is None:  # the message: what the declaration asks for
        return s.check[1] if s.check else f"one of {', '.join(map(str, s.choices))}" if s.choices else (
            f"a comma-separated list of {s.item.__name__}s")
    try:
        return problem(s, _value(s, value))
    except ValueError:
        return "a list of numbers"


def _value(s: Declared, value):
    return tuple(s.item(v) for v in value) if s.type is tuple else value


def define_settings(sections: Iterable[str] = tuple(config.SECTIONS), skip: Iterable[str] = ()) -> list[str]:
    """Define the flags of the declared settings of `sections`, by --help group; returns their names."""
    chosen = [s for name in sections for s in config.SETTINGS[name] if s.name not in set(skip)]
    for s in chosen:  # the registries' modules first: what they import defines no flag inside a group
        s.choices  # noqa: B018
    titles = list(dict.fromkeys(s.group for s in chosen))
    for title in titles:
        group(title)
        for s in chosen:
            if s.group == title:
                _define(s)
    return [s.name for s in chosen]


def config_section(name: str):
    """One section of the settings (a config dataclass) from the parsed flags."""
    cls = config.SECTIONS[name][0]
    return cls(**{s.name: _value(s, FLAGS[s.name].value) for s in config.SETTINGS[name]})


def config_from_flags() -> config.RunConfig:
    """The RunConfig that the parsed flags describe (every section's declared settings)."""
    return config.RunConfig(**{name: config_section(name) for name in config.SECTIONS})


def flags_file(names: Iterable[str]) -> str:
    """The named flags' effective values as flagfile text, reusable with --flagfile."""
    return "".join(FLAGS[name].serialize() + "\n" for name in sorted(names))


def _describe(flag) -> list[str]:
    default = flag.default
    if isinstance(flag, flags.BooleanFlag):
        head = f"  --[no]{flag.name}  (default: {'true' if default else 'false'})"
    elif default in (None, "", []):
        head = f"  --{flag.name}" + ("  (required)" if flag.name in _REQUIRED else "")
    else:
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        head = f"  --{flag.name}={shown}"
    return [head] + textwrap.wrap(flag.help, 96, initial_indent="      ", subsequent_indent="      ")


def usage(doc: str | None) -> str:
    """The project's own flags with their help and defaults, by group (nothing of absl's or TF's)."""
    names = list(FLAGS)
    lines = [(doc or "").strip(), ""]
    for i, (title, start) in enumerate(_GROUPS):
        end = _GROUPS[i + 1][1] if i + 1 < len(_GROUPS) else len(names)
        if end > start:
            lines += [f"{title}:"] + [line for name in names[start:end] for line in _describe(FLAGS[name])] + [""]
    lines.append("--helpfull lists every flag, absl's and TensorFlow's included.")
    return "\n".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
    """`app.run`'s flags parser: --help (and -h, --helpshort) print `usage` of the running tool."""
    if any(arg in ("-h", "-?", "--help", "--helpshort") for arg in argv[1:]):
        print(usage(sys.modules["__main__"].__doc__))
        sys.exit(0)
    return app.parse_flags_with_usage(argv)

