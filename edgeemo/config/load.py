"""edgeemo.yaml read into a validated Config: overrides applied, problems worded as one line per key."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from edgeemo.config.redact import redact
from edgeemo.config.schema import Config, ConfigError
from edgeemo.config.secrets import with_source_passwords


def describe(error: ValidationError, origin: str, flags: dict[str, str] | None = None) -> str:
    """One line per problem: `origin: key.path: what is wrong (got value)`; the origin of a value
    given on the command line is its flag (`flags`: key path -> `--flag`)."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        where = (flags or {}).get(path, origin)
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            parent = problem["loc"][:-1]
            message = f"unknown key; allowed here: {', '.join(sorted(allowed_keys(parent)))}"
        elif "input" in problem and not isinstance(problem["input"], (dict, list)):
            message += f" (got {redact(problem['input'])!r})"
        lines.append(f"{where}: {path}: {message}")
    return "\n".join(lines)


def allowed_keys(path: tuple) -> list[str]:
    model: type[BaseModel] = Config
    for part in path:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        model = getattr(annotation, "__args__", [annotation])[0] if not isinstance(annotation, type) else annotation
    return list(model.model_fields)


def load_config(path: Path | None, overrides: dict | None = None, flags: dict[str, str] | None = None) -> Config:
    """Read YAML (or nothing: the defaults), apply command-line overrides, validate. `flags` names the
    command-line flag of each override, for the messages."""
    origin = str(path) if path else "defaults"
    raw: dict = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): is this the config file?") from None
        try:
            raw = yaml.load(text, Loader=UniqueKeyLoader) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(yaml_problem(path, exc)) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, origin, flags)) from None
    return with_source_passwords(cfg)


def yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line: `file: line N, column M: not valid YAML: what` (PyYAML's own text spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if problem.startswith("duplicate key"):
        return f"{path}: {where}{problem}"
    context = getattr(exc, "context", None)
    return redact(f"{path}: {where}not valid YAML: {problem}" + (f" ({context})" if context else ""))


MAX_DEPTH = 64  # edgeemo.yaml needs 5


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last silently, so a second `url:` pasted below the first would win unseen), and only
    `true`/`false` are booleans (YAML 1.2): `audio: off` is the word "off", as written. A yes/no/on/off
    given for a true-or-false key is still read as one by the schema (pydantic's booleans)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        """Nesting is bounded well inside Python's recursion limit: a file nested a thousand levels
        deep is one clear line, not a RecursionError."""
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep)


UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def set_dotted(raw: dict, dotted: str, value: object) -> None:
    """Set `a.b.c` (or `sources.0.url`) in a nested dict/list, creating sections as needed.

    A section left empty in the YAML (`mqtt:` is null) is filled like a missing one. A path that
    cannot exist (a list index past the end, a key under a plain value) is a ConfigError, not a crash.
    """
    parts = dotted.split(".")
    node: object = raw
    try:
        for part, nxt in zip(parts, parts[1:]):
            node = _child(node, part, [{}] if nxt.isdigit() else {})
        if isinstance(node, list):
            node[int(parts[-1])] = value
        elif isinstance(node, dict):
            node[parts[-1]] = value
        else:
            raise TypeError
    except (IndexError, ValueError, TypeError):
        raise ConfigError(f"override {dotted}: no such key or list item in the config") from None


def _child(node: object, part: str, default: object) -> object:
    """The item `part` of a list or dict, created from `default` when a dict lacks it or holds null."""
    if isinstance(node, list):
        return node[int(part)]
    if not isinstance(node, dict):
        raise TypeError(part)
    if node.get(part) is None:
        node[part] = default
    return node[part]
