"""A node's directory and its configuration, ``node.toml``: one pydantic model, read and written as TOML.

The directory holds ``node.toml``, ``node.key`` (the payload key), ``keys.json`` (signing and
encryption keys) and, by default, the SQLite database; it is private to its owner (0700) and every
file in it is written whole, never through a link, mode 0600 (:mod:`gsomia._files`).

``node.toml`` records the database URL **without its password**: the password comes from
``GSOMIA_DATABASE_PASSWORD`` or from the file ``database_password_file`` names (written 0600 beside
it by ``node init`` when the URL given carried one). ``GSOMIA_DATABASE_URL`` only chooses the
database when a node is created; after that ``node.toml`` is the truth, so a later command never
opens another node's database, or an empty one, because a variable was (or was not) set.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from gsomia._files import private_dir, write_private
from gsomia.crypto.atrest import PayloadCipher
from gsomia.crypto.tls import TlsFiles
from gsomia.errors import ConfigError
from gsomia.kernel import DEFAULT_PUBLIC_RATE, parse_networks, parse_rates

__all__ = [
    "DEFAULT_MAX_CLOCK_SKEW_S",
    "DEFAULT_MAX_PAYLOAD",
    "KEYRING_FILE",
    "NodeConfig",
    "NodeSettings",
    "init_node_dir",
    "load_config",
    "set_endpoint",
    "set_tls",
]

DEFAULT_MAX_PAYLOAD = 1_048_576
DEFAULT_MAX_IMPORT = 256 * 1_048_576
DEFAULT_MAX_CLOCK_SKEW_S = 300
MAX_CLOCK_SKEW_S = 3600  # beyond an hour, a clock is broken, not skewed: fix it instead
DEFAULT_ENDPOINT = "http://127.0.0.1:8443"
CONFIG_FILE = "node.toml"
KEY_FILE = "node.key"
KEYRING_FILE = "keys.json"  # an older node's key ring file: imported into the store on first open
PASSWORD_FILE = "database.password"  # noqa: S105 - the name of the file holding it, not a password
DATABASE_ENV = "GSOMIA_DATABASE_URL"
PASSWORD_ENV = "GSOMIA_DATABASE_PASSWORD"  # noqa: S105 - the variable's name, not a password


class NodeSettings(BaseModel):
    """The ``[node]`` table of ``node.toml``; each field's description is written above it as a comment."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    party: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="the party this node serves (trigraph)")]
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the node's own database, without its password "
        "(absent: gsomia.db in this directory)",
    )
    database_password_file: str | None = Field(
        default=None,
        description="file (relative to this one) holding the database password; "
        f"{PASSWORD_ENV} takes precedence",
    )
    endpoint: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = Field(
        default=DEFAULT_ENDPOINT,
        description="the URL partners reach this node's /inbox at (published in its identity document)",
    )
    max_payload_bytes: Annotated[int, Field(gt=0)] = Field(
        default=DEFAULT_MAX_PAYLOAD, description="largest payload an item may carry, in bytes"
    )
    max_import_bytes: Annotated[int, Field(gt=0)] = Field(
        default=DEFAULT_MAX_IMPORT, description="largest transfer file 'gsomia import' reads, in bytes"
    )
    max_clock_skew_seconds: Annotated[int, Field(ge=0, le=MAX_CLOCK_SKEW_S)] = Field(
        default=DEFAULT_MAX_CLOCK_SKEW_S,
        description="how far (seconds) a partner's clock may differ from this node's before its "
        "envelopes are refused",
    )
    envelope_lifetime_seconds: Annotated[int, Field(ge=60, le=30 * 86400)] = Field(
        default=86400, description="how long (seconds) an envelope this node seals stays valid"
    )
    sender_interval_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=0.2,
        description="pause (seconds) of the background sender and the audit writer after a round "
        "that found nothing (a commit of this process that queues outbox entries or writes audit "
        "records ends it at once); while rounds find nothing it doubles, up to 1 s (or this, if "
        "longer): what another process commits is picked up within that",
    )
    head_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=5.0,
        description="how often (seconds) the node shares and checks tree heads, and gossips its partners' "
        "heads to the others (a split view is found within about one such interval)",
    )
    lease_seconds: Annotated[float, Field(ge=0.5, le=300)] = Field(
        default=5.0,
        description="how long (seconds) a process holds a kind of background work without renewing it: "
        "the longest another process of the node waits to take the work over from a dead one",
    )
    data_dirs: list[str] = Field(
        default_factory=list, description="extra agreement/party directories, relative to this file"
    )
    public_rate_limit: str = Field(
        default=DEFAULT_PUBLIC_RATE,
        description="what one source address (an IPv6 one by its /64) may ask without credentials, "
        "in the limits library's notation ('1200/minute', '20/second; 1200/minute'): each request to "
        "a route that needs none and each refusal of an unauthenticated caller spends one; past it, "
        "429 with Retry-After until a unit is free again (over a sliding window: the previous window's "
        "spending weighs on the current one; counted in the database: the node's, not a process's)",
    )
    rate_limit_exempt: list[str] = Field(
        default_factory=list,
        description="networks (CIDR) whose sources spend nothing of that budget, e.g. partners at fixed "
        "addresses; none by default, loopback included",
    )

    @field_validator("public_rate_limit")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        try:
            parse_rates(value)
        except ValueError:
            raise ValueError("is not a rate such as '1200/minute' or '20/second; 1200/minute'") from None
        return value

    @field_validator("rate_limit_exempt")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        try:
            parse_networks(value)
        except ValueError as exc:
            raise ValueError(f"holds something that is not a network in CIDR notation: {exc}") from None
        return value

    tls_cert: str | None = Field(
        default=None,
        description="TLS: this node's certificate chain (PEM, relative to this file): it serves HTTPS "
        "and presents it to partners (mutual TLS); its pin is published in the identity document",
    )
    tls_key: str | None = Field(default=None, description="TLS: the certificate's private key (PEM, 0600)")
    tls_ca: str | None = Field(
        default=None,
        description="TLS: the authorities partners' certificates must come from (PEM); a partner's "
        "certificate is accepted only if its registered identity document names it too",
    )

    @model_validator(mode="after")
    def _tls_together(self) -> NodeSettings:
        given = [self.tls_cert is not None, self.tls_key is not None, self.tls_ca is not None]
        if any(given) and not all(given):
            raise ValueError("tls_cert, tls_key and tls_ca are given together, or none of them")
        return self

    hold_as: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="per agreement, the level this node applies to a partner's level where the "
        'agreement offers a choice (Art. 4.2), e.g. {"kor-jpn-gsomia-2016" = {"KOR 군사II급비밀" = '
        '"特定秘密"}} (absent: the agreement\'s first row)',
    )

    @field_validator("hold_as")
    @classmethod
    def _levels_named(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for levels in value.values():
            for key in levels:
                if len(key.split(" ", 1)) != 2:
                    raise ValueError(f"{key!r}: name the originator and its level, e.g. 'KOR 군사II급비밀'")
        return value

    @field_validator("database_url")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = _parse_url(value)
        if url.password is not None:
            raise ValueError(
                f"holds a password: record the URL without it and put the password in "
                f"{PASSWORD_FILE} (database_password_file) or {PASSWORD_ENV}"
            )
        return value


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Where a node keeps things and which party it serves (``node.toml`` resolved against its directory)."""

    directory: Path
    party: str
    database_url: str  # with the password, if any: never written anywhere
    max_payload_bytes: int
    data_dirs: tuple[Path, ...]
    endpoint: str = DEFAULT_ENDPOINT
    # How far a partner's clock may be from ours: an envelope issued further ahead, or expired
    # longer ago, is refused (and audited, with the instants).
    max_clock_skew: timedelta = timedelta(seconds=DEFAULT_MAX_CLOCK_SKEW_S)
    max_import_bytes: int = DEFAULT_MAX_IMPORT
    envelope_lifetime: timedelta = timedelta(hours=24)
    sender_interval: float = 0.2
    head_interval: float = 5.0
    lease_seconds: float = 5.0
    public_rate_limit: str = DEFAULT_PUBLIC_RATE
    rate_limit_exempt: tuple[str, ...] = ()
    # TLS: served, presented to partners and their certificates checked (None: plain HTTP)
    tls: TlsFiles | None = None
    # (agreement, originator, originator's level) -> the level this node applies (Art. 4.2's choice)
    hold_as: Mapping[tuple[str, str, str], str] = dataclass_field(default_factory=dict)

    def key(self) -> bytes:
        path = self.directory / KEY_FILE
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the node key ({exc.strerror})") from exc

    def identity(self) -> str:
        """What makes this node itself: its party and a fingerprint of the payload key only its
        directory holds (the database's payloads are sealed under that key)."""
        return f"{self.party}:{hashlib.sha256(b'gsomia node identity' + self.key()).hexdigest()[:32]}"

    @property
    def database_name(self) -> str:
        """The database URL without its password, to show a person."""
        return _parse_url(self.database_url).render_as_string(hide_password=True)


def _parse_url(text: str) -> URL:
    try:
        return make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ValueError("is not a SQLAlchemy database URL (e.g. postgresql+psycopg://user@host/db)") from exc


def _sqlite_url(directory: Path) -> str:
    return f"sqlite:///{(directory / 'gsomia.db').resolve()}"


def _render(settings: NodeSettings) -> str:
    """``node.toml`` for ``settings``: the values set, each under its field's description."""
    document = tomlkit.document()
    document.add(tomlkit.comment("gsomia node configuration (gsomia.node.NodeSettings)"))
    table = tomlkit.table()
    values = settings.model_dump(exclude_none=True)
    for name, field in NodeSettings.model_fields.items():
        if name not in values:
            continue
        if field.description:
            table.add(tomlkit.comment(field.description))
        table.add(name, _inline(values[name]))
    document.add("node", table)
    return tomlkit.dumps(document)


def _inline(value: Any) -> Any:
    """A mapping as an inline table: a sub-table would take every key written after it into it."""
    if not isinstance(value, dict):
        return value
    inline = tomlkit.inline_table()
    for key, item in value.items():
        inline[key] = _inline(item)
    return inline


def _write(directory: Path, settings: NodeSettings) -> None:
    write_private(directory / CONFIG_FILE, _render(settings).encode())


def init_node_dir(
    directory: Path,
    party: str,
    database_url: str | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
) -> NodeConfig:
    """Create a node directory with its configuration and a fresh payload key (refuses to overwrite).

    ``database_url`` (default: ``GSOMIA_DATABASE_URL``, else SQLite in the directory) is recorded
    without its password; a password it carried goes to ``database.password`` (0600). The signing
    and encryption keys are made by the node on first open, in its store (sealed under the node
    key); a ``keys.json`` left by an older version is imported then.
    """
    config_path = directory / CONFIG_FILE
    if config_path.exists() or config_path.is_symlink():
        raise ConfigError(f"{config_path} exists already: this directory holds a node")
    url_text = database_url or os.environ.get(DATABASE_ENV) or None
    password_file: str | None = None
    recorded: str | None = None
    if url_text is not None:
        try:
            url = _parse_url(url_text)
        except ValueError as exc:
            raise ConfigError(f"--database-url {exc}") from None
        recorded = url._replace(password=None).render_as_string(hide_password=False)  # set() keeps a None
        if url.password is not None:
            password_file = PASSWORD_FILE
    try:
        settings = NodeSettings(
            party=party.upper(),
            database_url=recorded,
            database_password_file=password_file,
            endpoint=endpoint,
        )
    except ValidationError as exc:
        raise ConfigError(_validation_words(config_path, exc)) from None
    private_dir(directory)
    write_private(directory / KEY_FILE, PayloadCipher.generate_key(), exclusive=True)
    if password_file is not None and url_text is not None:
        write_private(directory / password_file, str(_parse_url(url_text).password).encode())
    _write(directory, settings)
    return load_config(directory)


def read_settings(directory: Path) -> NodeSettings:
    """The ``[node]`` table of ``directory/node.toml``, checked; ``ConfigError`` names what is wrong."""
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
    if isinstance(node.get("party"), str):
        node = {**node, "party": node["party"].upper()}
    try:
        return NodeSettings.model_validate(node)
    except ValidationError as exc:
        raise ConfigError(_validation_words(path, exc)) from None


def _validation_words(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "node"
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"{path}: node.{field}: {message}{more}"


def load_config(directory: Path) -> NodeConfig:
    """Read ``node.toml``; the database password comes from the environment or the password file."""
    settings = read_settings(directory)
    url = settings.database_url or _sqlite_url(directory)
    password = os.environ.get(PASSWORD_ENV)
    if password is None and settings.database_password_file is not None:
        path = directory / settings.database_password_file
        try:
            password = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the database password ({exc.strerror})") from exc
    if password is not None and settings.database_url is not None:
        url = _parse_url(url).set(password=password).render_as_string(hide_password=False)
    return NodeConfig(
        directory=directory,
        party=settings.party,
        database_url=url,
        max_payload_bytes=settings.max_payload_bytes,
        data_dirs=tuple((directory / d).resolve() for d in settings.data_dirs),
        endpoint=settings.endpoint,
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        max_import_bytes=settings.max_import_bytes,
        envelope_lifetime=timedelta(seconds=settings.envelope_lifetime_seconds),
        sender_interval=settings.sender_interval_seconds,
        head_interval=settings.head_interval_seconds,
        lease_seconds=settings.lease_seconds,
        public_rate_limit=settings.public_rate_limit,
        rate_limit_exempt=tuple(settings.rate_limit_exempt),
        tls=None
        if settings.tls_cert is None or settings.tls_key is None or settings.tls_ca is None
        else TlsFiles(
            directory / settings.tls_cert, directory / settings.tls_key, directory / settings.tls_ca
        ),
        hold_as=_hold_as(settings.hold_as),
    )


def _hold_as(table: dict[str, dict[str, str]]) -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for agreement, levels in table.items():
        for key, target in levels.items():
            originator, level = key.split(" ", 1)
            out[(agreement, originator.upper(), level)] = target
    return out


def update_settings(directory: Path, **changes: Any) -> NodeConfig:
    """Change fields of ``node.toml`` (checked by the model, written atomically) and reload it."""
    settings = read_settings(directory)
    try:
        updated = NodeSettings.model_validate({**settings.model_dump(), **changes})
    except ValidationError as exc:
        raise ConfigError(_validation_words(directory / CONFIG_FILE, exc)) from None
    _write(directory, updated)
    return load_config(directory)


def set_endpoint(directory: Path, endpoint: str) -> NodeConfig:
    """Change the published endpoint in ``node.toml`` (e.g. when the port is chosen at start)."""
    return update_settings(directory, endpoint=endpoint)


def set_tls(directory: Path, cert: str | None, key: str | None, ca: str | None) -> NodeConfig:
    """Name the node's TLS files in ``node.toml`` (relative to it), or none (all ``None``: plain HTTP)."""
    return update_settings(directory, tls_cert=cert, tls_key=key, tls_ca=ca)
