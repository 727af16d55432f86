"""The one place rcahook reads its configuration (docs/config.md).

Where a setting comes from, first found wins:

1. a command-line flag (the commands lay flags over the Config this module returns);
2. the environment: RCAHOOK_RANKER, RCAHOOK_MODEL, RCAHOOK_LLM_URL, RCAHOOK_LLM_MODEL;
3. the user's own config: $XDG_CONFIG_HOME/rcahook/config.toml (~/.config/rcahook/config.toml);
4. the repository's config: `.rcahook.toml`, else `[tool.rcahook]` in pyproject.toml, read
   from the working tree or, for a bare repository, from the revision investigated;
5. the defaults.

The repository is untrusted input (a clone of anyone's project): from it only the keys in
SHARED_KEYS apply. The others choose where prompts with diffs are sent (llm-url, llm-model)
or which model files are loaded (model), so they are honoured from a repository only when
the user's config lists it in `trusted-repositories`; otherwise they are ignored and the
command says so once (`Config.ignored`).

    # ~/.config/rcahook/config.toml
    llm-url = "http://gpu-box:8000"
    trusted-repositories = ["/home/me/src/app"]

    # .rcahook.toml in the repository
    min-confidence = 0.3
    fail-above = 0.8              # pre-push: block above this risk (default: warn only)
    [services]
    api = ["services/api/", "lib/http/"]
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from rcahook.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the 3.10 floor: the same parser, from PyPI (a dependency on 3.10 only)
    import tomli as tomllib

REPOSITORY_FILES = (".rcahook.toml", "pyproject.toml")  # the first one with settings wins
USER_FILE = Path("rcahook") / "config.toml"  # under $XDG_CONFIG_HOME
TRUST_KEY = "trusted-repositories"  # read from the user's config only

# Safe to take from any repository: they tune the analysis of that repository and cannot
# send data anywhere or load anything. `ranker` only picks one of rcahook's own rankers;
# the model it runs is the user's (flag, environment, user config) or the embedded one.
SHARED_KEYS = ("services", "min-confidence", "fail-above", "max-candidates", "ranker",
               "llm-timeout", "llm-connect-timeout",  # timeouts: how long to wait, at most 600 s
               "commit-url")  # only ever a link on rcahook serve's page (http(s), the sha filled in, escaped)
# Choose where prompts (commit messages, diffs) go, or which model files are loaded.
UNSAFE_KEYS = ("model", "llm-url", "llm-model")
KEYS = SHARED_KEYS + UNSAFE_KEYS

ENVIRONMENT = {"ranker": "RCAHOOK_RANKER", "model": "RCAHOOK_MODEL", "llm-url": "RCAHOOK_LLM_URL",
               "llm-model": "RCAHOOK_LLM_MODEL"}


@dataclass(frozen=True)
class Config:
    services: dict[str, tuple[str, ...]] = field(default_factory=dict)  # service -> path prefixes
    min_confidence: float | None = None  # below: "no confident suggestion"
    fail_above: float | None = None  # pre-push: block commits riskier than this
    max_candidates: int | None = None  # stage-1 cut
    ranker: str | None = None  # investigate's default ranker
    # The model settings only ever hold what the user chose (flag, environment, their own
    # config, or a repository they trusted): a URL here receives RCAHOOK_LLM_API_KEY.
    model: str | None = None  # model directory for LLM rankers
    llm_url: str | None = None  # OpenAI-compatible server
    llm_model: str | None = None  # model name to request from llm_url
    llm_timeout: float | None = None  # seconds to wait for the server's answer (rcahook.llm.remote)
    llm_connect_timeout: float | None = None  # seconds to wait for a connection to it
    commit_url: str | None = None  # "https://forge/acme/app/commit/{sha}": links on rcahook serve's page
    trusted_repositories: tuple[Path, ...] = ()  # user config only: repositories whose model settings apply
    source: str = "defaults"  # where the settings came from, for messages
    origins: dict[str, str] = field(default_factory=dict)  # key -> the file or variable it came from
    ignored: tuple[str, ...] = ()  # one line per repository file whose unsafe keys were not applied

    def origin(self, key: str) -> str:
        return self.origins.get(key, self.source)


_ATTRS = {key: key.replace("-", "_") for key in KEYS}


def _from_table(table: dict, source: str, *, user: bool = False) -> Config:
    known = set(KEYS) | {TRUST_KEY}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(
            f"{source}: unknown rcahook setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}")
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"{source}: {key} must be a number between 0 and 1, got {value!r}")
        return float(value)

    def text(key: str) -> str | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{source}: {key} must be a non-empty string, got {value!r}")
        return value

    def seconds(key: str) -> float | None:
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 < value <= 600):
            raise ConfigError(f"{source}: {key} must be a number of seconds above 0 and at most 600, "
                              f"got {value!r}")
        return None if value is None else float(value)

    commit_url = text("commit-url")
    if commit_url is not None and (not commit_url.startswith(("https://", "http://")) or "{sha}" not in commit_url):
        raise ConfigError(f"{source}: commit-url must be an http(s) URL with {{sha}} where the commit goes, "
                          f"e.g. \"https://github.com/acme/app/commit/{{sha}}\", got {commit_url!r}")
    max_candidates = table.get("max-candidates")
    if max_candidates is not None and (isinstance(max_candidates, bool) or not isinstance(max_candidates, int)
                                       or max_candidates < 1):
        raise ConfigError(f"{source}: max-candidates must be a positive integer, got {max_candidates!r}")
    trusted = _trusted(table.get(TRUST_KEY), source) if user else ()
    # A repository cannot vouch for itself: only the user's own file is read for trust.
    ignored = () if user or TRUST_KEY not in table else (
        f"ignored {TRUST_KEY} from {source}: only your own config file can trust a repository",)
    config = Config(services=parsed, min_confidence=number("min-confidence"),
                    fail_above=number("fail-above"), max_candidates=max_candidates,
                    ranker=text("ranker"), model=text("model"), llm_url=text("llm-url"),
                    llm_model=text("llm-model"), llm_timeout=seconds("llm-timeout"),
                    llm_connect_timeout=seconds("llm-connect-timeout"), commit_url=commit_url,
                    trusted_repositories=trusted, source=source,
                    ignored=ignored)
    return replace(config, origins={key: source for key in KEYS if _is_set(config, key)})


def _trusted(value: object, source: str) -> tuple[Path, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{source}: {TRUST_KEY} must be a list of paths, e.g. {TRUST_KEY} = ["/home/me/src/app"]')
    paths = []
    for entry in value:
        path = Path(entry).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"{source}: {TRUST_KEY} entry {entry!r} is not an absolute path; "
                              "write the repository's full path (~ is allowed)")
        paths.append(path.resolve())
    return tuple(paths)


def _is_set(config: Config, key: str) -> bool:
    value = getattr(config, _ATTRS[key])
    return bool(value) if key == "services" else value is not None


def _table(data: bytes, name: str, source: str) -> dict | None:
    """The rcahook table of one TOML file: top level, or [tool.rcahook]; None if it has none."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source} is not valid TOML ({e}); fix or remove it") from e
    if name == "pyproject.toml":
        table = doc.get("tool", {}).get("rcahook")
        return table if isinstance(table, dict) else None
    if "tool" in doc:  # [tool.rcahook] tolerated in rcahook's own files
        table = doc["tool"].get("rcahook", {}) if isinstance(doc["tool"], dict) else {}
        return table if isinstance(table, dict) else {}
    return doc


def parse_config(files: dict[str, bytes | None], *, label: Callable[[str], str] = str) -> Config:
    """A repository's config from the contents of `.rcahook.toml` and `pyproject.toml`
    (None: absent), every key as written; `load_config` decides which ones apply."""
    for name in REPOSITORY_FILES:
        data = files.get(name)
        if data is None:
            continue
        table = _table(data, name, label(name))
        if table is not None:
            return _from_table(table, label(name))
    return Config()


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_CONFIG_HOME/rcahook/config.toml; a relative XDG_CONFIG_HOME is ignored (XDG spec)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        home = environ.get("HOME") or str(Path.home())
        base = os.path.join(home, ".config")
    return Path(base) / USER_FILE


def user_config(environ: Mapping[str, str] | None = None) -> Config:
    """The user's own config file (empty if there is none)."""
    path = user_config_path(environ)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as e:
        raise ConfigError(f"cannot read your rcahook config {path} ({e.strerror}); fix its permissions "
                          "or remove it") from None
    table = _table(data, path.name, str(path))
    return _from_table(table or {}, str(path), user=True)


def environment_config(environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    values = {key: environ[var].strip() for key, var in ENVIRONMENT.items() if environ.get(var, "").strip()}
    # keyed by field name: mypy cannot type a dict whose value type depends on the key
    return Config(**{_ATTRS[k]: v for k, v in values.items()}, source="the environment",  # type: ignore[arg-type]
                  origins={k: ENVIRONMENT[k] for k in values})


def repository_ids(workdir: Path | None, git_dir: Path | None) -> tuple[Path, ...]:
    """The paths a `trusted-repositories` entry may name for this repository: its working
    tree, its git common directory and, when that is `<dir>/.git`, the main working tree
    `<dir>` (so trusting a checkout also trusts its linked worktrees)."""
    ids = [workdir.resolve()] if workdir is not None else []
    if git_dir is not None:
        git = git_dir.resolve()
        # A linked worktree's git dir is <common>/worktrees/<name>; taken from where it is,
        # not from its `commondir` file, so a crafted file cannot borrow another's trust.
        common = git.parent.parent if git.parent.name == "worktrees" and (git / "commondir").is_file() else git
        ids.append(common)
        if common.name == ".git":
            ids.append(common.parent)
    return tuple(dict.fromkeys(ids))


def _apply_trust(repo: Config, user: Config, user_path: Path, ids: tuple[Path, ...]) -> Config:
    """The repository's config less what it may not choose; the ignored keys become one line."""
    unsafe = [key for key in UNSAFE_KEYS if _is_set(repo, key)]
    if not unsafe or (ids and set(ids) & set(user.trusted_repositories)):
        return repo
    # keyed by field name, all optional ones: mypy cannot see which fields the keys name
    kept = replace(repo, **{_ATTRS[k]: None for k in unsafe},  # type: ignore[arg-type]
                   origins={k: v for k, v in repo.origins.items() if k not in unsafe})
    name = json.dumps(str(ids[0])) if ids else '"/path/of/the/repository"'
    how = (f"add {name} to {TRUST_KEY} in {user_path}" if user.trusted_repositories
           else f"add the line {TRUST_KEY} = [{name}] to {user_path}")
    line = (f"ignored {', '.join(unsafe)} from {repo.source}: a repository's config may not choose where "
            f"data is sent or which model is loaded; if you trust this repository, {how}")
    return replace(kept, ignored=(*repo.ignored, line))


def merge(*layers: Config) -> Config:
    """One Config from several, the first layer that sets a key winning. The model settings
    go together: the first layer naming a model or a server gives both (a local model in one
    layer and a server in another would clash), and llm-model from that layer or one above."""
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for key in (k for k in SHARED_KEYS if k != "services"):
        layer = next((c for c in layers if _is_set(c, key)), None)
        if layer is not None:
            values[_ATTRS[key]], origins[key] = getattr(layer, _ATTRS[key]), layer.origin(key)
    services: dict[str, tuple[str, ...]] = {}
    for layer in reversed(layers):  # per service name, the higher layer wins
        services.update(layer.services)
    if services:
        origins["services"] = ", ".join(dict.fromkeys(c.origin("services") for c in layers if c.services))
    at = next((i for i, c in enumerate(layers) if c.model is not None or c.llm_url is not None), None)
    if at is not None:
        chosen = layers[at]
        for key in ("model", "llm-url"):
            if _is_set(chosen, key):
                values[_ATTRS[key]], origins[key] = getattr(chosen, _ATTRS[key]), chosen.origin(key)
        if chosen.llm_url is not None:
            named = next((c for c in layers[: at + 1] if c.llm_model is not None), None)
            if named is not None:
                values["llm_model"], origins["llm-model"] = named.llm_model, named.origin("llm-model")
    sources = [c.source for c in layers if c.source != "defaults" and (_any_set(c) or c.trusted_repositories)]
    # keyed by field name: mypy cannot type a dict whose value type depends on the key
    return Config(services=services, **values,  # type: ignore[arg-type]
                  trusted_repositories=tuple(p for c in layers for p in c.trusted_repositories),
                  source=", ".join(dict.fromkeys(sources)) or "defaults", origins=origins,
                  ignored=tuple(line for c in layers for line in c.ignored))


def _any_set(config: Config) -> bool:
    return any(_is_set(config, key) for key in KEYS)


def user_settings(environ: Mapping[str, str] | None = None) -> Config:
    """What the user chose, without any repository: the environment over the user's config."""
    return merge(environment_config(environ), user_config(environ))


def _read_in_tree(workdir: Path, name: str) -> bytes | None:
    """A config file of the working tree; a symlink out of the tree is not the repository's."""
    path = workdir / name
    if not path.is_file():
        return None
    if not path.resolve().is_relative_to(workdir.resolve()):
        raise ConfigError(f"{path} is a link to {path.resolve()}, outside the repository; "
                          "make it a plain file or remove it")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror}); fix its permissions or remove it") from None


def load_config(workdir: Path | None, read_head: Callable[[str], bytes | None] | None = None, *,
                git_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Environment, then the user's config, then the repository's config (working tree, or
    `read_head(name)` for a bare repository) with its unsafe keys applied only when the user
    trusts the repository (`git_dir` identifies it; without it, only the working tree does)."""
    files: dict[str, bytes | None] = {}
    for name in REPOSITORY_FILES:
        if workdir is not None:
            files[name] = _read_in_tree(workdir, name)
        elif read_head is not None:
            files[name] = read_head(name)
    def label(name: str) -> str:
        return str(workdir / name) if workdir is not None else f"{name} (committed, in {git_dir or 'the repository'})"

    repo = parse_config(files, label=label)
    user = user_config(environ)
    repo = _apply_trust(repo, user, user_config_path(environ), repository_ids(workdir, git_dir))
    return merge(environment_config(environ), user, repo)
