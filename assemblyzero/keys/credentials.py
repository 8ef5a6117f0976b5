"""The credentials file: named API keys and how many may run at once.

    {"credentials": [{"name": "team-a", "provider": "anthropic",
                      "key_env": "ANTHROPIC_KEY_A", "max_concurrent": 1,
                      "enabled": true, "base_url": "...", "structured": true}]}

`structured: false` stops the provider asking for a structured (JSON
schema) reply natively, for a server that rejects it. `key` instead of
`key_env` holds a literal secret; then the file must not
be readable by group or others (refused otherwise, as ssh does). Only a
credential's *name* ever travels in argv or the environment. Messages about
the file name an entry by its position and never quote a value from it.
The user's view: docs/user-guide.md, Credentials and leases.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from assemblyzero.constants import ENV_CREDENTIALS
from assemblyzero.ids import is_valid_id
from assemblyzero.keys.pacing import LIMIT_MAX, LIMIT_MIN, PACE_FIELDS, Limits
from assemblyzero.keys.redact import Redactor
from assemblyzero.providers import KEYLESS, REGISTRY
from assemblyzero.ui.prefix_tee import KEY_SHAPES

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,30}")  # an unknown field shown by name
_KEY_SHAPES = re.compile(KEY_SHAPES.pattern.decode())
_FIELDS = ("name", "provider", "key_env", "key", "max_concurrent", "enabled", "base_url",
           "structured", *PACE_FIELDS)
_EXAMPLE = '{"name": "team-a", "provider": "anthropic", "key_env": "ANTHROPIC_API_KEY"}'


class CredentialError(ValueError):
    """The credentials file, or one entry of it, cannot be used."""


@dataclass(frozen=True)
class Credential:
    name: str
    provider: str
    key_env: str | None = None
    literal: bool = False  # the secret is the file's `key` field
    max_concurrent: int = 1
    enabled: bool = True
    base_url: str | None = None
    structured: bool = True  # False: the provider never asks for a structured reply natively
    limits: Limits = field(default_factory=Limits)  # rpm, tpm, input_tpm, output_tpm ceilings


@dataclass(frozen=True)
class CredentialFile:
    path: Path
    entries: tuple[Credential, ...]
    secrets: dict[str, str]  # name -> secret, for the entries whose secret is available
    left_out: tuple[tuple[str, str], ...] = ()  # (provider, why) of entries without a secret

    @property
    def problems(self) -> tuple[str, ...]:
        """Why each entry left out is (missing env var, ...)."""
        return tuple(why for _, why in self.left_out)

    def problems_for(self, providers: tuple[str, ...]) -> list[str]:
        """The problems of the entries of these providers only (the ones a run would use)."""
        return [why for provider, why in self.left_out if provider in providers]

    def usable(self, provider: str) -> list[Credential]:
        return [c for c in self.entries
                if c.provider == provider and c.enabled and c.name in self.secrets]

    def listed(self, provider: str) -> bool:
        return any(c.provider == provider for c in self.entries)


def default_path() -> Path:
    raw = os.environ.get(ENV_CREDENTIALS)
    return Path(raw) if raw else Path.home() / ".assemblyzero" / "credentials.json"


def load(path: Path | None = None) -> CredentialFile:
    """Read and check the file; a missing file is an empty pool.

    No message quotes a value of the file (a key may have been pasted
    anywhere): entries are named by position, and every message passes a
    Redactor of the file's secrets and the common key shapes besides.
    """
    path = path or default_path()
    known: list[str] = []  # the file's secrets, once it parsed
    try:
        creds = _load(path, known)
    except CredentialError as exc:
        raise CredentialError(Redactor(known)(str(exc))) from None
    redact = Redactor(known)
    return replace(creds, left_out=tuple((p, redact(why)) for p, why in creds.left_out))


def _load(path: Path, known: list[str]) -> CredentialFile:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CredentialFile(path, (), {})
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CredentialError(f"cannot read credentials file {path}: {why}; make it a readable "
                              f"JSON file, or point {ENV_CREDENTIALS} at one") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CredentialError(f"credentials file {path} is not valid JSON: {exc}; fix the file "
                              "at that position") from None
    items = data.get("credentials") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise CredentialError(f'credentials file {path}: expected {{"credentials": [...]}} '
                              f"(got {_shape(data)}); write it as "
                              f'{{"credentials": [{_EXAMPLE}]}}')
    known.extend(_secrets_in(items))
    entries, secrets, problems = _entries(path, items)
    if any(c.literal for c in entries):
        _check_private(path)
    return CredentialFile(path, tuple(entries), secrets, tuple(problems))


def _secrets_in(items: list[Any]) -> list[str]:
    """Every secret the entries hold or point at, checked or not (for the Redactor)."""
    found = []
    for item in items:
        if isinstance(item, dict):
            key, env = item.get("key"), item.get("key_env")
            if isinstance(key, str):
                found.append(key)
            if isinstance(env, str) and _ENV_NAME.fullmatch(env) and os.environ.get(env):
                found.append(os.environ[env])
    return found


def _looks_like_key(text: str) -> bool:
    return _KEY_SHAPES.search(text) is not None


def _shape(data: Any) -> str:
    """What the top level of the file is, for a message (never its values: keys may be there)."""
    if isinstance(data, dict):
        inner = data.get("credentials")
        return ("an object without \"credentials\"" if "credentials" not in data
                else f'"credentials" as {_kind(inner)}')
    return _kind(data)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def _got(value: Any) -> str:
    """A wrong value for a message: numbers as they are, text never (it may be a key)."""
    return repr(value) if isinstance(value, (bool, int, float)) else _kind(value)


def _entries(
    path: Path, items: list[Any]
) -> tuple[list[Credential], dict[str, str], list[tuple[str, str]]]:
    entries: list[Credential] = []
    secrets: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        entry = _entry(path, index, item)
        first = next((n for n, c in enumerate(entries) if c.name == entry.name), None)
        if first is not None:
            raise CredentialError(f"credentials file {path}: entries {first + 1} and {index + 1} "
                                  "have the same name; rename one of the two entries")
        entries.append(entry)
        if entry.literal:
            secrets[entry.name] = str(item["key"])
        elif entry.key_env and os.environ.get(entry.key_env):
            secrets[entry.name] = os.environ[entry.key_env]
        elif entry.key_env:  # the name and variable passed the checks: neither looks like a key
            problems.append((entry.provider, f"credential {entry.name!r}: environment variable "
                             f"{entry.key_env} is not set; this key is not used"))
        elif entry.provider in KEYLESS:
            secrets[entry.name] = ""  # offline and cmd need no secret
    return entries, secrets, problems


def _entry(path: Path, index: int, item: Any) -> Credential:
    """One entry, checked; a message names the entry by position and never quotes a value."""
    where = f"credentials file {path}, entry {index + 1}"
    if not isinstance(item, dict):
        raise CredentialError(f"{where}: expected an object (got {_kind(item)}); write each "
                              f"entry as {_EXAMPLE}")
    name = item.get("name")
    if not isinstance(name, str) or not is_valid_id(name):
        raise CredentialError(f"{where}: 'name' must be 1 to 64 letters, digits, '_' or '-' "
                              f"(got {_got(name)}); rename it, e.g. \"name\": \"team-a\"")
    if _looks_like_key(name):
        raise CredentialError(f"{where}: 'name' looks like an API key (names are shown on the "
                              "terminal and in logs); rename it, e.g. \"name\": \"team-a\", put "
                              "the key in the environment, and rotate it if the file was shared")
    unknown = set(item) - set(_FIELDS)
    if unknown:
        raise CredentialError(f"{where}: {_unknown(unknown)}; fix or remove them "
                              f"(the fields are {', '.join(_FIELDS)})")
    provider = item.get("provider")
    if provider is None or provider == "":
        raise CredentialError(f"{where}: 'provider' is required; add e.g. \"provider\": "
                              f"\"anthropic\" (known: {', '.join(sorted(REGISTRY))})")
    if not isinstance(provider, str) or provider not in REGISTRY:
        raise CredentialError(f"{where}: 'provider' must be one of "
                              f"{', '.join(sorted(REGISTRY))} (got {_got(provider)}); write e.g. "
                              "\"provider\": \"anthropic\"")
    if "key" in item and "key_env" in item:
        raise CredentialError(f"{where}: give 'key_env' or 'key', not both; remove one "
                              "(better keep 'key_env')")
    key_env = item.get("key_env")
    variable = re.sub(r"\W", "_", provider.upper()) + "_API_KEY"  # for the examples
    if key_env is not None and (not isinstance(key_env, str) or not _ENV_NAME.fullmatch(key_env)
                                or _looks_like_key(key_env)):
        # never echo it: a key pasted here by mistake must not reach the terminal
        raise CredentialError(f"{where}: 'key_env' must be the name of an environment variable "
                              f"(letters, digits, '_'), not the key itself; write e.g. "
                              f"\"key_env\": \"{variable}\" and export {variable}=<key>")
    if "key" in item and (not isinstance(item["key"], str) or not item["key"]):
        raise CredentialError(f"{where}: 'key' must be a non-empty string; put the key there, "
                              f"or use \"key_env\": \"{variable}\" instead")
    if provider not in KEYLESS and "key" not in item and key_env is None:
        raise CredentialError(f"{where}: needs 'key_env' (or 'key'); add e.g. "
                              f"\"key_env\": \"{variable}\" and export {variable}=<key>")
    limit = item.get("max_concurrent", 1)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise CredentialError(f"{where}: 'max_concurrent' must be a whole number >= 1 "
                              f"(got {_got(limit)}); write e.g. \"max_concurrent\": 2")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise CredentialError(f"{where}: 'enabled' must be true or false (got {_got(enabled)}); "
                              "write \"enabled\": true or false, without quotes")
    base_url = item.get("base_url")
    if base_url is not None and not isinstance(base_url, str):
        raise CredentialError(f"{where}: 'base_url' must be a string (got {_got(base_url)}); write "
                              "e.g. \"base_url\": \"http://127.0.0.1:8000/v1\"")
    structured = item.get("structured", True)
    if not isinstance(structured, bool):
        raise CredentialError(f"{where}: 'structured' must be true or false "
                              f"(got {_got(structured)}); write \"structured\": false, without "
                              "quotes, for a server that rejects structured replies")
    return Credential(name, provider, key_env, "key" in item, limit, enabled, base_url,
                      structured, _limits(where, item))


def _limits(where: str, item: dict[str, Any]) -> Limits:
    """The entry's per-minute limits: each a number above 0 (a request or token count)."""
    found: dict[str, float] = {}
    for name in PACE_FIELDS:
        value = item.get(name)
        if value is None:
            continue
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not LIMIT_MIN <= value <= LIMIT_MAX):
            raise CredentialError(f"{where}: '{name}' must be a number from {LIMIT_MIN:g} "
                                  f"to {LIMIT_MAX:,.0f} per minute (got {_got(value)}); write "
                                  f"e.g. \"{name}\": {50 if name == 'rpm' else 40000}, or "
                                  "leave it out for no limit of ours")
        found[name] = float(value)
    return Limits(**found)


def _unknown(fields: set[str]) -> str:
    """`unknown field(s) a, b`: only the names that are short identifiers (a key may be one)."""
    shown = sorted(f for f in fields if _FIELD_NAME.fullmatch(f) and not _looks_like_key(f))
    hidden = len(fields) - len(shown)
    if not shown:
        return f"{hidden} unknown field(s), not shown (a field name may be a pasted key)"
    more = f" and {hidden} more, not shown (not a field name)" if hidden else ""
    return f"unknown field(s) {', '.join(shown)}{more}"


def _check_private(path: Path) -> None:
    """Refuse literal keys in a file that group or others can read."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(
            f"credentials file {path} holds literal keys but is readable by others "
            f"(mode {stat.S_IMODE(mode):o}); fix it with: chmod 600 {path}")
