"""What every single message transform and predicate shares: declared options (Kafka Connect's
``ConfigDef``, as :class:`~airconnect.core.config.Key`), the key/value variants, Connect's
``Requirements`` and ``SchemaUtil``, and Java's regular expressions and ``SimpleDateFormat``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

from airconnect.core.config import REQUIRED, Key
from airconnect.core.data import (
    ARRAY,
    STRUCT,
    ConnectRecord,
    Schema,
    Struct,
    java_class,
)
from airconnect.core.errors import DataError


class OptionError(ValueError):
    """A transform's option is wrong; the chain turns it into a ConfigError naming the full key."""

    def __init__(self, option: str | None, message: str):
        super().__init__(message)
        self.option = option


def parse_list(raw: Any) -> list[str]:
    """ConfigDef's LIST: comma-separated, each item trimmed; an empty string is an empty list."""
    if isinstance(raw, list):
        return [str(i).strip() for i in raw]
    text = str(raw).strip()
    return [] if not text else [part.strip() for part in re.split(r"\s*,\s*", text)]


def coerce_option(key: Key, raw: Any) -> Any:
    """A raw option value as ConfigDef parses it (strings stay strings, empty ones included)."""
    def bad(what: str) -> OptionError:
        return OptionError(key.name, f"expected {what}, got {raw!r}")

    if raw is None:
        value: Any = None
    elif key.type == "string":
        if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
            raise bad("a string")
        value = str(raw).strip()
    elif key.type == "list":
        value = parse_list(raw)
    elif key.type == "bool":
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            value = raw.strip().lower() == "true"
        else:
            raise bad("true or false")
    elif key.type == "int":
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = int(str(raw).strip())
        except ValueError:
            raise bad("an integer") from None
    else:  # pragma: no cover - a declaration error
        raise AssertionError(key.type)
    if value is not None and key.choices and value not in key.choices:
        raise bad("one of " + ", ".join(repr(c) for c in key.choices))
    if value is not None and key.check is not None:
        problem = key.check(value)
        if problem:
            raise bad(problem)
    return value


def not_empty(value: Any) -> str | None:
    """ConfigDef.NonEmptyString / NonEmptyListValidator."""
    return "a non-empty value" if value is None or len(value) == 0 else None


def java_regex(value: str) -> str | None:
    try:
        compile_java_regex(value)
    except re.error as exc:
        return f"a valid (Java) regular expression ({exc})"
    return None


class Plugin:
    """A transform or a predicate: its Connect class names, its options, its documentation."""

    #: Kafka Connect's class name(s); the first is the canonical one.
    class_names: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[tuple[Key, ...]] = ()
    doc: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any]):
        known = {k.name: k for k in self.keys}
        for name in options:
            if name not in known:
                raise OptionError(name, f"is not an option of {self.class_names[0]}; its options are: "
                                  + (", ".join(sorted(known)) or "none"))
        self.options: dict[str, Any] = {}
        for key in self.keys:
            if key.name in options and options[key.name] is not None:
                self.options[key.name] = coerce_option(key, options[key.name])
            elif key.default is REQUIRED:
                raise OptionError(key.name, f"is required: {key.doc}")
            else:
                self.options[key.name] = key.default
        self.configure(self.options)

    def configure(self, options: dict[str, Any]) -> None:
        """Checks across options, and what the plugin derives from them (raise OptionError)."""

    @property
    def class_name(self) -> str:
        return self.class_names[0]


class Transform(Plugin):
    """A single message transform: ``apply`` returns the new record, or ``None`` to drop it."""

    #: "key" or "value" for Connect's ``$Key``/``$Value`` variants; None for whole-record transforms.
    part: ClassVar[str | None] = None

    def apply(self, record: ConnectRecord) -> ConnectRecord | None:
        raise NotImplementedError

    def operating_schema(self, record: ConnectRecord) -> Schema | None:
        return record.key_schema if self.part == "key" else record.value_schema

    def operating_value(self, record: ConnectRecord) -> Any:
        return record.key if self.part == "key" else record.value

    def new_record(self, record: ConnectRecord, schema: Schema | None, value: Any,
                   headers: Any = None) -> ConnectRecord:
        if self.part == "key":
            return record.new_record(key_schema=schema, key=value, headers=headers)
        return record.new_record(value_schema=schema, value=value, headers=headers)


class Predicate(Plugin):
    """A predicate: whether a conditional transform applies to a record."""

    def test(self, record: ConnectRecord) -> bool:
        raise NotImplementedError


def variants(base: type[Transform], package: str, name: str) -> tuple[type[Transform], type[Transform]]:
    """Connect's ``Name$Key`` and ``Name$Value`` classes of ``base``."""
    made = []
    for part in ("key", "value"):
        suffix = "$Key" if part == "key" else "$Value"
        cls = type(f"{base.__name__}{part.title()}", (base,), {
            "part": part, "class_names": (f"{package}.{name}{suffix}",),
            "__module__": base.__module__, "__doc__": base.__doc__})
        made.append(cls)
    return made[0], made[1]


# -- Connect's Requirements and SchemaUtil

def require_schema(schema: Schema | None, purpose: str) -> Schema:
    if schema is None:
        raise DataError(f"Schema required for [{purpose}]")
    return schema


def require_map(value: Any, purpose: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"Only Map objects supported in absence of schema for [{purpose}], found: "
                        + _class_name(value))
    return value


def require_struct(value: Any, purpose: str) -> Struct:
    if not isinstance(value, Struct):
        raise DataError(f"Only Struct objects supported for [{purpose}], found: {_class_name(value)}")
    return value


def _class_name(value: Any) -> str:
    return "null" if value is None else java_class(value).removeprefix("class ")


def copy_basics(source: Schema, type_: str = STRUCT, **changes: Any) -> Schema:
    """``SchemaUtil.copySchemaBasics(source, new SchemaBuilder(type_))``: name, version, doc and
    parameters copied; optional and default not (a builder starts required, without one)."""
    extra: dict[str, Any] = {"value_schema": source.value_schema} if type_ == ARRAY and source.type == ARRAY else {}
    extra.update(changes)
    return Schema(type_, name=source.name, version=source.version, doc=source.doc,
                  parameters=dict(source.parameters) if source.parameters is not None else None, **extra)


def field_value(struct: Struct, name: str, with_default: bool) -> Any:
    return struct.get(name) if with_default else struct.get_without_default(name)


REPLACE_NULL: Final = Key("replace.null.with.default", "bool", True,
                          "Whether a null field that has a default value takes the default (true) or stays null.")


# -- Java's regular expressions

_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")


def compile_java_regex(pattern: str) -> re.Pattern[str]:
    """A ``java.util.regex.Pattern`` as Python's ``re`` (named groups ``(?<name>`` translated)."""
    return re.compile(_NAMED_GROUP.sub("(?P<", pattern))


def java_replacement(replacement: str) -> Callable[[re.Match[str]], str]:
    """``Matcher.replaceFirst``'s replacement syntax: ``$1``, ``${name}``, ``\\`` escapes (parsed once)."""
    parts: list[str | int] = []  # literal text, or a group number / name (as a 1-tuple-free marker below)
    names: dict[int, str] = {}
    i, n = 0, len(replacement)
    literal: list[str] = []
    while i < n:
        c = replacement[i]
        if c == "\\":
            i += 1
            if i >= n:
                raise DataError("character to be escaped is missing")
            literal.append(replacement[i])
            i += 1
        elif c == "$":
            i += 1
            if i >= n:
                raise DataError("Illegal group reference: group index is missing")
            parts.append("".join(literal))
            literal = []
            if replacement[i] == "{":
                end = replacement.find("}", i)
                if end < 0:
                    raise DataError("named capturing group is missing trailing '}'")
                names[len(parts)] = replacement[i + 1:end]
                parts.append(-1)
                i = end + 1
            else:
                j = i
                while j < n and replacement[j].isdigit():
                    j += 1
                if j == i:
                    raise DataError("Illegal group reference")
                parts.append(int(replacement[i:j]))  # digits beyond the group count are literal (below)
                i = j
        else:
            literal.append(c)
            i += 1
    parts.append("".join(literal))

    def expand(m: re.Match[str]) -> str:
        out: list[str] = []
        for index, part in enumerate(parts):
            if isinstance(part, str):
                out.append(part)
            elif part == -1:
                out.append(m.group(names[index]) or "")
            else:
                digits = str(part)
                group = int(digits[0])
                k = 1
                while k < len(digits) and group * 10 + int(digits[k]) <= m.re.groups:
                    group = group * 10 + int(digits[k])
                    k += 1
                if group > m.re.groups:
                    raise DataError(f"No group {group}")
                out.append((m.group(group) or "") + digits[k:])
        return "".join(out)
    return expand


# -- Java's SimpleDateFormat (UTC, English), what TimestampConverter and TimestampRouter use

_MONTHS: Final = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                  "November", "December")
_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_PATTERN_LETTERS: Final = "GyYMLwWDdFEuaHkKhmsSzZX"
_UTC: Final = dt.timezone.utc
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=_UTC)


class SimpleDateFormat:
    """``java.text.SimpleDateFormat`` in UTC: format a moment (epoch milliseconds) and parse text
    leniently, as Java does (trailing text ignored, out-of-range fields rolled over)."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.parts: list[tuple[str, int] | str] = []  # (letter, count) or literal text
        i, n = 0, len(pattern)
        while i < n:
            c = pattern[i]
            if c == "'":
                end = i + 1
                text = []
                while True:
                    if end >= n:
                        raise ValueError(f"Unterminated quote in {pattern!r}")
                    if pattern[end] == "'":
                        if end + 1 < n and pattern[end + 1] == "'":
                            text.append("'")
                            end += 2
                            continue
                        break
                    text.append(pattern[end])
                    end += 1
                self.parts.append("".join(text) if end > i + 1 else "'")
                i = end + 1
            elif c.isascii() and c.isalpha():
                if c not in _PATTERN_LETTERS:
                    raise ValueError(f"Illegal pattern character '{c}'")
                j = i
                while j < n and pattern[j] == c:
                    j += 1
                self.parts.append((c, j - i))
                i = j
            else:
                self.parts.append(c)
                i += 1

    def format(self, millis: int) -> str:
        moment = _EPOCH + dt.timedelta(milliseconds=millis)
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            c, count = part
            out.append(self._field(moment, c, count))
        return "".join(out)

    @staticmethod
    def _field(m: dt.datetime, c: str, count: int) -> str:
        def num(v: int) -> str:
            return str(v).zfill(count)

        if c in "yY":
            return str(m.year % 100).zfill(2) if count == 2 else num(m.year)
        if c in "ML":
            if count >= 4:
                return _MONTHS[m.month - 1]
            if count == 3:
                return _MONTHS[m.month - 1][:3]
            return num(m.month)
        if c == "d":
            return num(m.day)
        if c == "D":
            return num(m.timetuple().tm_yday)
        if c == "E":
            return _DAYS[m.weekday()] if count >= 4 else _DAYS[m.weekday()][:3]
        if c == "u":
            return num(m.isoweekday())
        if c == "a":
            return "AM" if m.hour < 12 else "PM"
        if c == "H":
            return num(m.hour)
        if c == "k":
            return num(m.hour or 24)
        if c == "K":
            return num(m.hour % 12)
        if c == "h":
            return num(m.hour % 12 or 12)
        if c == "m":
            return num(m.minute)
        if c == "s":
            return num(m.second)
        if c == "S":
            return num(m.microsecond // 1000)
        if c == "z":
            return "Coordinated Universal Time" if count >= 4 else "UTC"
        if c == "Z":
            return "+0000"
        if c == "X":
            return "Z"
        if c == "G":
            return "AD"
        raise DataError(f"the pattern letter {c!r} is not supported by airconnect's SimpleDateFormat")

    def parse(self, text: str) -> int:
        """Epoch milliseconds; ``ValueError`` when the text does not match from its start."""
        fields: dict[str, int] = {}
        pos = 0
        parts = self.parts
        for index, part in enumerate(parts):
            if isinstance(part, str):
                if not text.startswith(part, pos):
                    raise ValueError(f"Unparseable date: \"{text}\"")
                pos += len(part)
                continue
            c, count = part
            following = parts[index + 1] if index + 1 < len(parts) else None
            abutting = isinstance(following, tuple) and following[0] not in "EaMLzZX" or (
                isinstance(following, tuple) and following[0] in "ML" and following[1] <= 2)
            if c in "ML" and count >= 3:
                for i, name in enumerate(_MONTHS):
                    for candidate in (name, name[:3]):
                        if text[pos:pos + len(candidate)].lower() == candidate.lower():
                            fields["M"] = i + 1
                            pos += len(candidate)
                            break
                    else:
                        continue
                    break
                else:
                    raise ValueError(f"Unparseable date: \"{text}\"")
                continue
            if c == "E":
                for name in _DAYS:
                    for candidate in (name, name[:3]):
                        if text[pos:pos + len(candidate)].lower() == candidate.lower():
                            pos += len(candidate)
                            break
                    else:
                        continue
                    break
                else:
                    raise ValueError(f"Unparseable date: \"{text}\"")
                continue
            if c == "a":
                marker = text[pos:pos + 2].upper()
                if marker not in ("AM", "PM"):
                    raise ValueError(f"Unparseable date: \"{text}\"")
                fields["a"] = 0 if marker == "AM" else 12
                pos += 2
                continue
            if c in "zZX":
                if text.startswith("Z", pos):
                    pos += 1
                    continue
                m = re.compile(r"(?:UTC|GMT)?([+-])(\d\d):?(\d\d)?").match(text, pos)
                if m is None:
                    if text.startswith(("UTC", "GMT"), pos):
                        pos += 3
                        continue
                    raise ValueError(f"Unparseable date: \"{text}\"")
                sign = -1 if m.group(1) == "-" else 1
                fields["offset"] = sign * (int(m.group(2)) * 60 + int(m.group(3) or 0))
                pos = m.end()
                continue
            sign = 1
            if text.startswith("-", pos) and c in "yY":
                sign, pos = -1, pos + 1
            limit = count if abutting else len(text)
            m = re.compile(r"\d{1,%d}" % max(1, limit)).match(text, pos)
            if m is None:
                raise ValueError(f"Unparseable date: \"{text}\"")
            value = sign * int(m.group())
            if c in "yY" and count <= 2 and len(m.group()) == 2:
                value += 2000 if value < (dt.date.today().year % 100) + 20 else 1900
            fields[c] = value
            pos = m.end()
        year = fields.get("y", fields.get("Y", 1970))
        month = fields.get("M", fields.get("L", 1))
        day = fields.get("d", 1)
        if "D" in fields and "d" not in fields:
            month, day = 1, fields["D"]
        hour = fields.get("H", fields.get("k", 0) % 24)
        if "h" in fields or "K" in fields:
            hour = fields.get("h", fields.get("K", 0)) % 12 + fields.get("a", 0)
        base = dt.datetime(year, 1, 1, tzinfo=_UTC)
        # lenient: months, days, hours... past their range roll over
        years, month0 = divmod(month - 1, 12)
        base = base.replace(year=year + years, month=month0 + 1)
        moment = base + dt.timedelta(days=day - 1, hours=hour, minutes=fields.get("m", 0), seconds=fields.get("s", 0),
                                     milliseconds=fields.get("S", 0)) - dt.timedelta(minutes=fields.get("offset", 0))
        delta = moment - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def check_date_format(value: str) -> str | None:
    try:
        SimpleDateFormat(value)
    except ValueError as exc:
        return f"a SimpleDateFormat pattern ({exc})"
    return None
