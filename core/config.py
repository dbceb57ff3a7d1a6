"""How a setting is declared: once, as a dataclass field that names its variable.

A field of a settings dataclass is declared with :meth:`Group.setting`, which carries the
environment variable, how its text is parsed (with its bounds), the default, whether it is a
secret (kept out of ``repr``) and a one-line doc. The rest is derived from that declaration:
parsing a mapping of variables (:func:`parse`), the error messages (the parsers'), the list of
variables (:func:`declared`) and the settings tables of the docs (:func:`markdown`) -- as
starlette's ``config("KEY", cast=int, default=5)`` is the only place a variable is named.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

MiB = 1024 * 1024
_KEY = "setting"
# Where a doc holds generated tables: <!-- settings: group ... --> ... <!-- /settings -->
_BLOCK = re.compile(r"(<!-- settings:([a-z ]*)-->\n)(.*?)(<!-- /settings -->)", re.DOTALL)


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Parser(Protocol[T_co]):
    """Turns a variable's text into its value, or raises :class:`ConfigError` naming it."""

    def __call__(self, name: str, raw: str) -> T_co: ...


@dataclass(frozen=True, slots=True)
class Flag:
    """true/false, 1/0, yes/no or on/off, in any case."""

    def __call__(self, name: str, raw: str) -> bool:
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class Integer:
    minimum: int = 0

    def __call__(self, name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < self.minimum:
            raise ConfigError(f"{name} must be >= {self.minimum}, got {value}")
        return value


@dataclass(frozen=True, slots=True)
class Number:
    """A decimal number, never negative; ``positive`` also refuses 0, ``maximum`` caps it."""

    positive: bool = False
    maximum: float | None = None

    @property
    def bounds(self) -> str:
        if self.maximum is None:
            return "> 0" if self.positive else ">= 0"
        return f"in {'(' if self.positive else '['}0, {self.maximum:g}]"

    def __call__(self, name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if self.maximum is None:
            # Written as "below the floor" so that NaN passes, as it always has.
            refused = value <= 0 if self.positive else value < 0
        else:
            above = value > 0 if self.positive else value >= 0
            refused = not (above and value <= self.maximum)
        if refused:
            raise ConfigError(f"{name} must be {self.bounds}, got {value}")
        return value


@dataclass(frozen=True, slots=True)
class Text:
    """Text without its surrounding blanks, in the case asked for."""

    case: Literal["keep", "lower", "upper"] = "keep"

    def __call__(self, name: str, raw: str) -> str:
        value = raw.strip()
        if self.case == "keep":
            return value
        return value.lower() if self.case == "lower" else value.upper()


@dataclass(frozen=True, slots=True)
class OptionalText:
    """Text where an empty value means unset."""

    def __call__(self, name: str, raw: str) -> str | None:
        return raw.strip() or None


@dataclass(frozen=True, slots=True)
class CommaList:
    """A comma-separated list; blank items are dropped."""

    def __call__(self, name: str, raw: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed set of words (compared without surrounding blanks, lower-cased if asked)."""

    options: tuple[str, ...]
    lower: bool = False

    def __call__(self, name: str, raw: str) -> str:
        value = raw.strip().lower() if self.lower else raw.strip()
        if value not in self.options:
            raise ConfigError(f"{name} must be one of {', '.join(self.options)}")
        return value


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a field declares; :func:`declared` adds the field's name and default."""

    variable: str
    parse: Parser[Any]
    group: str
    doc: str
    secret: bool = False
    # The default as the docs show it, when the value alone says too little
    # ("unset = 404", "embedded in dev/test, required otherwise").
    shown: str | None = None
    attribute: str = ""
    default: Any = None


@dataclass(frozen=True, slots=True)
class Group:
    """Settings that belong together in the docs (one table each)."""

    name: str
    title: str

    def setting(
        self,
        variable: str,
        parse: Parser[T],
        default: T,
        doc: str,
        *,
        secret: bool = False,
        shown: str | None = None,
    ) -> T:
        """The field that holds ``variable``, assigned in the dataclass body:
        ``port: int = SERVERS.setting("PORT", Integer(1), 8000, "HTTP port")``."""
        declaration = Declaration(variable, parse, self.name, doc, secret, shown)
        return field(default=default, repr=not secret, metadata={_KEY: declaration})


def declared(cls: type) -> tuple[Declaration, ...]:
    """The declared settings of a dataclass, in field order."""
    return tuple(
        replace(f.metadata[_KEY], attribute=f.name, default=f.default)
        for f in fields(cls)
        if _KEY in f.metadata
    )


def parse(settings: Iterable[Declaration], env: Mapping[str, str]) -> dict[str, Any]:
    """Field values for the variables ``env`` sets; the first malformed one raises."""
    return {
        s.attribute: s.parse(s.variable, env[s.variable]) for s in settings if s.variable in env
    }


def markdown(settings: Iterable[Declaration], groups: Iterable[Group]) -> str:
    """One table per group (variable | meaning | default), each under the group's title."""
    settings = tuple(settings)
    blocks = []
    for group in groups:
        rows = [_row(s) for s in settings if s.group == group.name]
        table = "\n".join(["| variable | meaning | default |", "|---|---|---|", *rows])
        blocks.append(f"**{group.title}**\n\n{table}")
    return "\n\n".join(blocks)


def marked_groups(text: str) -> list[list[str]]:
    """The groups each generated block of a doc names, in order."""
    return [m[2].split() for m in _BLOCK.finditer(text)]


def fill_tables(text: str, render: Callable[[Sequence[str]], str]) -> str:
    """``text`` with each generated block holding ``render(its groups)``."""
    return _BLOCK.sub(lambda m: f"{m[1]}\n{render(m[2].split())}\n\n{m[4]}", text)


def _row(setting: Declaration) -> str:
    meaning = setting.doc
    if isinstance(setting.parse, Choice):
        meaning += f"; one of {', '.join(f'`{o}`' for o in setting.parse.options)}"
    return f"| `{setting.variable}` | {meaning} | {shown_default(setting)} |"


def shown_default(setting: Declaration) -> str:
    """The default column of a setting's row."""
    value = setting.default
    if setting.shown is not None:
        return setting.shown
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    if isinstance(value, int) and value >= MiB and value % MiB == 0:
        return f"{value} ({value // MiB} MiB)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
