"""How a setting is declared: one dataclass field carries its name, type, default, choices, bounds,
help, --help group and the words the report uses. Flags, config.json, validation and
tools/report.py all read these declarations (`config.py` holds them); nothing restates them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from reid_tf.errors import ReidError

ORIGINAL = "The 2017 original (each off by default)"  # the --help group of the 2017 quirks


class ConfigError(ReidError, ValueError):
    """A setting, or a combination of settings, that cannot be run; one line naming the flag."""


def setting(default: Any, help: str, *, choices: tuple | Callable[[], tuple] = (),
            lower: float | None = None, upper: float | None = None,
            check: tuple[Callable[[Any], bool], str] | None = None,
            words: Callable[[Any, Any], str] | None = None, column: str | None = None,
            group: str | None = None, resumable: bool = False) -> Any:
    """A field of a config dataclass declared as a setting.

    `choices` may be a function giving them (a registry filled at import); `check` is (predicate,
    what the value must be), and decides in place of `choices` when both are given; "{choices}"
    in `help` lists them; `words(value, run_config)` is the report's phrase for it ("" leaves
    it out), in the report's `column` (model, training or loss; default: by section); `group` is
    its --help title (default: its section's); `resumable` settings may change when a run
    resumes (they change how long or how loudly it runs, not what it computes).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "lower": lower, "upper": upper, "check": check,
        "words": words, "column": column, "group": group, "resumable": resumable})


@dataclasses.dataclass(frozen=True)
class Declared:
    """One setting as its declaration gives it."""

    name: str
    section: str
    type: type  # bool, int, float, str, or tuple (of `item`)
    default: Any
    help: str
    choices_or_source: tuple | Callable[[], tuple]
    lower: float | None
    upper: float | None
    check: tuple[Callable[[Any], bool], str] | None
    words: Callable[[Any, Any], str] | None
    column: str
    group: str
    resumable: bool
    item: type | None = None  # the element type of a tuple setting

    @property
    def choices(self) -> tuple:
        source = self.choices_or_source
        return tuple(source() if callable(source) else source)

    @property
    def text(self) -> str:
        """The help text, its choices filled in."""
        return self.help.replace("{choices}", ", ".join(map(str, self.choices)))

    @property
    def key(self) -> str:
        """Its name in config.json: section.name."""
        return f"{self.section}.{self.name}"


def declared(cls: type, section: str, group: str, column: str) -> list[Declared]:
    """The settings of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, item = hints[f.name], None
        if typing.get_origin(kind) is tuple:
            kind, item = tuple, typing.get_args(kind)[0]
        m = f.metadata
        out.append(Declared(f.name, section, kind, f.default, m["help"], m["choices"], m["lower"], m["upper"],
                            m["check"], m["words"], m["column"] or column, m["group"] or group,
                            m["resumable"], item))
    return out


def problem(s: Declared, value: Any) -> str | None:
    """What is wrong with `value` for setting `s` by its declaration (None when nothing is)."""
    values = value if s.type is tuple else (value,)
    for v in values:
        if s.choices and s.check is None and v not in s.choices:
            return f"one of {', '.join(map(str, s.choices))}"
        if s.lower is not None and v < s.lower:
            return f"at least {s.lower:g}"
        if s.upper is not None and v > s.upper:
            return f"at most {s.upper:g}"
    if s.check is not None and not s.check[0](value):
        return s.check[1]
    return None


def check_fields(config: Any, settings: list[Declared]) -> None:
    """Refuse, in one line naming the flag, the first value its declaration does not allow."""
    for s in settings:
        value = getattr(config, s.name)
        wrong = problem(s, value)
        if wrong:
            shown = ",".join(map(str, value)) if s.type is tuple else value
            raise ConfigError(f"--{s.name}={shown}: must be {wrong}")


def words(run_config: Any, settings: list[Declared], column: str) -> dict[str, str]:
    """The report's phrases of one column, by setting ("" left out), in declaration order."""
    out = {}
    for s in settings:
        if s.words is not None and s.column == column:
            phrase = s.words(getattr(getattr(run_config, s.section), s.name), run_config)
            if phrase:
                out[s.name] = phrase
    return out


def from_flag_lines(settings: list[Declared], lines: list[str]) -> dict[str, Any]:
    """{name: value} of the declared settings that flagfile lines set (--name=value, --name,
    --noname; the last one wins), typed by their declarations: a run's flags.cfg read back."""
    by_name = {s.name: s for s in settings}
    out: dict[str, Any] = {}
    for line in lines:
        name, has_value, text = line.strip().lstrip("-").partition("=")
        if not has_value:
            positive = name in by_name
            name = name if positive else name[2:] if name.startswith("no") else name
            if name in by_name and by_name[name].type is bool:
                out[name] = positive
            continue
        s = by_name.get(name)
        if s is None:
            continue
        if s.type is tuple:
            out[name] = tuple(s.item(v) for v in text.split(",") if v)
        elif s.type is bool:
            out[name] = text.lower() in ("true", "1")
        else:
            out[name] = s.type(text)
    return out


def flagfile_lines(path: str) -> list[str]:
    """The flag lines of a flagfile, its `--flagfile=` includes expanded in place (paths as absl
    reads them, from the working folder), comments and blank lines left out."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"--flagfile={path}: cannot be read ({e.strerror})") from None
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("--flagfile="):
            lines += flagfile_lines(line.partition("=")[2])
        elif line.startswith("-"):
            lines.append(line)
    return lines

