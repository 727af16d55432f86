"""The one place rcahook reads its configuration: `[tool.rcahook]` in the repository's
pyproject.toml, or `.rcahook.toml` (which wins), both read from the working tree or, for
a bare repository, from HEAD.

    [tool.rcahook]
    min-confidence = 0.3
    fail-above = 0.8              # pre-push: block above this risk (default: warn only)
    [tool.rcahook.services]
    api = ["services/api/", "lib/http/"]
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rcahook.errors import ConfigError


@dataclass(frozen=True)
class Config:
    services: dict[str, tuple[str, ...]] = field(default_factory=dict)  # service -> path prefixes
    min_confidence: float | None = None  # below: "no confident suggestion"
    fail_above: float | None = None  # pre-push: block commits riskier than this
    max_candidates: int | None = None  # stage-1 cut
    ranker: str | None = None  # investigate's default ranker
    model: str | None = None  # model directory for LLM rankers
    llm_url: str | None = None  # OpenAI-compatible server
    source: str = "defaults"


_KEYS = {"services", "min-confidence", "fail-above", "max-candidates", "ranker", "model", "llm-url"}


def _from_table(table: dict, source: str) -> Config:
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(
            f"{source}: unknown rcahook setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KEYS))}")
    services = table.get("services", {})
    if not isinstance(services, dict):
        raise ConfigError(f"{source}: 'services' must be a table of name = [path prefixes]")
    parsed: dict[str, tuple[str, ...]] = {}
    for name, prefixes in services.items():
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise ConfigError(f"{source}: services.{name} must be a list of path prefixes")
        parsed[name] = tuple(p.lstrip("./") if p.startswith("./") else p for p in prefixes)

    def number(key: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"{source}: {key} must be a number between 0 and 1, got {value!r}")
        return float(value)

    def text(key: str) -> str | None:
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return value

    max_candidates = table.get("max-candidates")
    if max_candidates is not None and (not isinstance(max_candidates, int) or max_candidates < 1):
        raise ConfigError(f"{source}: max-candidates must be a positive integer")
    return Config(services=parsed, min_confidence=number("min-confidence"),
                  fail_above=number("fail-above"), max_candidates=max_candidates,
                  ranker=text("ranker"), model=text("model"), llm_url=text("llm-url"),
                  source=source)


def parse_config(files: dict[str, bytes | None]) -> Config:
    """Config from the contents of `.rcahook.toml` and `pyproject.toml` (None: absent)."""
    for name in (".rcahook.toml", "pyproject.toml"):
        data = files.get(name)
        if data is None:
            continue
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{name} is not valid TOML ({e}); fix or remove it") from e
        table = doc if name == ".rcahook.toml" else doc.get("tool", {}).get("rcahook")
        if table is not None:
            if name == ".rcahook.toml" and "tool" in table:
                table = table["tool"].get("rcahook", {})
            return _from_table(table, name)
    return Config()


def load_config(workdir: Path | None, read_head: callable | None = None) -> Config:
    """Read config files from the working tree, or through `read_head(path)` for bare repos."""
    files: dict[str, bytes | None] = {}
    for name in (".rcahook.toml", "pyproject.toml"):
        if workdir is not None:
            p = workdir / name
            files[name] = p.read_bytes() if p.is_file() else None
        elif read_head is not None:
            files[name] = read_head(name)
    return parse_config(files)
