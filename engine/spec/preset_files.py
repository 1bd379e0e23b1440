"""Preset files: TOML read, `extends` chains followed, `--set` overrides applied, validated.

Every error names the file (or the `--set` that caused it) and the dotted key:
each step records which source set each key, so the schema's messages
(engine/spec/config.py) can say where a bad value came from.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from engine.spec.catalog import parent_preset
from engine.spec.config import PresetConfig, validate
from engine.spec.errors import ConfigError


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: preset file not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def _merge(base: dict, over: dict, origin: dict, source: str, prefix: str = "") -> dict:
    """Deep-merge `over` into `base`, recording which file set each dotted key."""
    out = dict(base)
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        replace_table = (
            key == "method"
            and isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and "name" in value
            and value.get("name") != out[key].get("name")
        )
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not replace_table:
            out[key] = _merge(out[key], value, origin, source, dotted + ".")
        else:
            out[key] = value
            _mark(origin, dotted, value, source)
    return out


def _mark(origin: dict, dotted: str, value: Any, source: str) -> None:
    origin[dotted] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(origin, f"{dotted}.{k}", v, source)


def _load_chain(path: Path, origin: dict, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve() if path.exists() else path
    if path in seen:
        raise ConfigError(f"{path}: key 'extends': circular extends chain")
    raw = _read_toml(path)
    parent = raw.pop("extends", None)
    base: dict[str, Any] = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: key 'extends': expected a file name, given {parent!r}")
        parent_path = parent_preset(parent, path)
        if parent_path is None:
            raise ConfigError(f"{path}: key 'extends': file {path.parent / parent} not found")
        base = _load_chain(parent_path, origin, (*seen, path))
    return _merge(base, raw, origin, str(path))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value); the value is read as TOML, else kept as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, for example attack.eps=8/255")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"--set {text}: '{key}' is not a dotted key like attack.eps")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str], origin: dict) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))  # deep copy of plain data
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                dotted = ".".join(parts[: i + 1])
                raise ConfigError(f"--set {text}: key '{dotted}' is a value, not a table")
            node = child
        if parts == ["method", "name"] and value != node.get("name"):
            node.clear()  # another method: its own keys start from defaults
        node[parts[-1]] = value
        origin[".".join(parts)] = f"--set {text}"
    return out


def load_preset(path: str | Path, overrides: list[str] | None = None) -> PresetConfig:
    """Read a preset file (following `extends`), apply `--set` overrides, validate."""
    origin: dict[str, str] = {}
    path = Path(path)
    raw = _load_chain(path, origin)
    raw = apply_overrides(raw, overrides or [], origin)
    return validate(raw, origin, str(path))


def from_json(text: str, source: str = "checkpoint") -> PresetConfig:
    """Rebuild the resolved config stored in a checkpoint's metadata."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"{source}: key 'config': metadata is not valid JSON") from None
    return validate(raw, {}, source)


def with_overrides(cfg: PresetConfig, overrides: list[str], source: str) -> PresetConfig:
    """Apply `--set` overrides to an already-resolved config (eval, resume)."""
    origin: dict[str, str] = {}
    raw = apply_overrides(cfg.to_dict(), overrides, origin)
    return validate(raw, origin, source)
