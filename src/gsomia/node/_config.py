"""A node's directory: ``node.toml`` (configuration), ``node.key`` (payload key), the SQLite database."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from gsomia.crypto.atrest import PayloadCipher
from gsomia.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_CLOCK_SKEW_S",
    "DEFAULT_MAX_PAYLOAD",
    "KEYRING_FILE",
    "NodeConfig",
    "init_node_dir",
    "load_config",
    "set_endpoint",
]

DEFAULT_MAX_PAYLOAD = 1_048_576
DEFAULT_MAX_CLOCK_SKEW_S = 300
MAX_CLOCK_SKEW_S = 3600  # beyond an hour, a clock is broken, not skewed: fix it instead
CONFIG_FILE = "node.toml"
KEY_FILE = "node.key"
KEYRING_FILE = "keys.json"  # an older node's key ring file: imported into the store on first open
DATABASE_ENV = "GSOMIA_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Where a node keeps things and which party it serves."""

    directory: Path
    party: str
    database_url: str
    max_payload_bytes: int
    data_dirs: tuple[Path, ...]
    endpoint: str = "http://127.0.0.1:8443"
    # How far a partner's clock may be from ours: an envelope issued further ahead, or expired
    # longer ago, is refused (and audited, with the instants).
    max_clock_skew: timedelta = timedelta(seconds=DEFAULT_MAX_CLOCK_SKEW_S)

    def key(self) -> bytes:
        path = self.directory / KEY_FILE
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the node key ({exc.strerror})") from exc


def _sqlite_url(directory: Path) -> str:
    return f"sqlite:///{(directory / 'gsomia.db').resolve()}"


def init_node_dir(
    directory: Path,
    party: str,
    database_url: str | None = None,
    endpoint: str = "http://127.0.0.1:8443",
) -> NodeConfig:
    """Create a node directory with its configuration and a fresh payload key (refuses to overwrite).

    The signing and encryption keys are made by the node on first open, in its store (sealed under
    the node key); a ``keys.json`` left by an older version is imported then.
    """
    config_path = directory / CONFIG_FILE
    if config_path.exists():
        raise ConfigError(f"{config_path} exists already: this directory holds a node")
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / KEY_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(PayloadCipher.generate_key())
    lines = [
        "# gsomia node configuration",
        "[node]",
        f'party = "{party}"',
        f"max_payload_bytes = {DEFAULT_MAX_PAYLOAD}",
        "# the URL partners reach this node's /inbox at (published in its identity document)",
        f'endpoint = "{endpoint}"',
        "# how far (seconds) a partner's clock may differ from this node's before its envelopes are refused",
        f"max_clock_skew_seconds = {DEFAULT_MAX_CLOCK_SKEW_S}",
        "# extra agreement/party directories, relative to this file",
        "data_dirs = []",
    ]
    if database_url is not None:
        lines.insert(3, f'database_url = "{database_url}"')
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(directory)


def load_config(directory: Path) -> NodeConfig:
    """Read ``node.toml``; ``GSOMIA_DATABASE_URL`` overrides the database URL."""
    path = directory / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: no node here ({exc.strerror}); run 'gsomia node init' first") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML (UTF-8): {exc}") from exc
    node = raw.get("node")
    if not isinstance(node, dict):
        raise ConfigError(f"{path}: missing the [node] table")
    party = node.get("party")
    if not isinstance(party, str) or len(party) != 3:
        raise ConfigError(f"{path}: node.party must be a party trigraph such as KOR")
    limit = node.get("max_payload_bytes", DEFAULT_MAX_PAYLOAD)
    if not isinstance(limit, int) or limit <= 0:
        raise ConfigError(f"{path}: node.max_payload_bytes must be a positive integer")
    skew = node.get("max_clock_skew_seconds", DEFAULT_MAX_CLOCK_SKEW_S)
    if type(skew) is not int or not 0 <= skew <= MAX_CLOCK_SKEW_S:
        raise ConfigError(
            f"{path}: node.max_clock_skew_seconds must be a whole number of seconds from 0 to "
            f"{MAX_CLOCK_SKEW_S}, found {skew!r}"
        )
    dirs = node.get("data_dirs", [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError(f"{path}: node.data_dirs must be a list of paths")
    url = os.environ.get(DATABASE_ENV) or node.get("database_url") or _sqlite_url(directory)
    if not isinstance(url, str):
        raise ConfigError(f"{path}: node.database_url must be a string")
    endpoint = node.get("endpoint", "http://127.0.0.1:8443")
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{path}: node.endpoint must be an http(s) URL")
    return NodeConfig(
        directory=directory,
        party=party.upper(),
        database_url=url,
        max_payload_bytes=limit,
        data_dirs=tuple((directory / d).resolve() for d in dirs),
        endpoint=endpoint,
        max_clock_skew=timedelta(seconds=skew),
    )


def set_endpoint(directory: Path, endpoint: str) -> NodeConfig:
    """Change the published endpoint in ``node.toml`` (e.g. when the port is chosen at start)."""
    path = directory / CONFIG_FILE
    text = path.read_text(encoding="utf-8")
    lines = [
        f'endpoint = "{endpoint}"' if line.startswith("endpoint =") else line for line in text.splitlines()
    ]
    if not any(line.startswith("endpoint =") for line in lines):
        lines.insert(lines.index("[node]") + 1, f'endpoint = "{endpoint}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(directory)
