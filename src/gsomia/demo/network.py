"""A three-nation network (KOR, JPN, USA) on loopback: built, started, watched and stopped.

``build`` lays out one node directory per party with its people, tokens and the other
two nodes registered as peers for every agreement the pair shares (the out-of-band
exchange of identity documents, done here by hand). ``start`` runs each node as its
own process (``gsomia node serve``); ``serve_in_threads`` runs them inside this process
instead, with a clock passed in, for the demo and the tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gsomia._files import open_private_append, private_dir, write_private
from gsomia.core.catalogue import Catalogue
from gsomia.errors import ConfigError
from gsomia.node import Clock, Node, init_node_dir, load_config, set_endpoint, system_clock

__all__ = ["PARTIES", "NetNode", "build", "open_nodes", "serve_in_threads", "start", "status", "stop"]

PARTIES = ("KOR", "JPN", "USA")
TOPICS = ["dprk-missile", "dprk-nuclear", "prc-navy"]
STATE_FILE = "net.json"
# Node processes this process started: kept so they are reaped (not left as zombies) when stopped here.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True, slots=True)
class NetNode:
    party: str
    directory: Path
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _people(node: Node) -> dict[str, str]:
    """Register an administrator, a release officer and an analyst; return their tokens."""
    scheme = node.catalogue.party(node.party).scheme
    top = max(scheme.levels, key=lambda lv: lv.rank).name
    secret = next(lv.name for lv in scheme.levels if lv.rank == 2)
    people = [
        {"id": "admin", "name": f"{node.party} node administrator", "roles": ["administrator"]},
        {
            "id": "officer",
            "name": f"{node.party} release officer",
            "clearance": top,
            "need_to_know": TOPICS,
            "roles": ["release_officer", "analyst"],
        },
        {
            "id": "analyst",
            "name": f"{node.party} analyst",
            "clearance": secret,
            "need_to_know": ["dprk-missile"],
            "roles": ["analyst"],
        },
    ]
    tokens = {}
    for person in people:
        if node.store.get_person(person["id"]) is None:  # type: ignore[arg-type]
            node.add_person(None, {**person, "nationality": node.party})
        tokens[str(person["id"])] = node.issue_token(None, str(person["id"]), days=365)[1]
    return tokens


def build(
    directory: Path,
    *,
    ports: dict[str, int] | None = None,
    clock: Clock = system_clock,
    database_urls: dict[str, str] | None = None,
) -> list[NetNode]:
    """Create (or reuse) the three node directories and register each node with the other two.

    ``database_urls`` puts a party's node on another store (PostgreSQL); SQLite by default.
    """
    private_dir(directory)
    chosen = ports or {party: free_port() for party in PARTIES}
    members = [NetNode(p, directory / p.lower(), chosen[p]) for p in PARTIES]
    nodes: dict[str, Node] = {}
    for member in members:
        if not (member.directory / "node.toml").exists():
            # each node its own database: a SQLite file in its directory unless a URL is given for it
            url = (database_urls or {}).get(
                member.party
            ) or f"sqlite:///{(member.directory / 'gsomia.db').resolve()}"
            init_node_dir(member.directory, member.party, url, endpoint=member.endpoint)
        else:
            set_endpoint(member.directory, member.endpoint)
        node = Node(load_config(member.directory), clock=clock)
        nodes[member.party] = node
        tokens = _people(node)
        write_private(member.directory / "tokens.json", json.dumps(tokens, indent=2).encode())
    for member in members:
        node = nodes[member.party]
        for other in members:
            if other.party == member.party:
                continue
            shared = sorted(
                a.id for a in node.catalogue.agreements_of(member.party) if other.party in a.parties
            )
            node.exchange.register_peer(None, nodes[other.party].exchange.identity(), shared)
    for node in nodes.values():
        node.close()
    return members


def open_nodes(members: list[NetNode], clock: Clock, catalogue: Catalogue | None = None) -> dict[str, Node]:
    """The members as in-process nodes sharing one clock (and, for a what-if, one catalogue)."""
    return {m.party: Node(load_config(m.directory), clock=clock, catalogue=catalogue) for m in members}


@contextmanager
def serve_in_threads(
    nodes: dict[str, Node], members: list[NetNode], streams: dict[str, Any] | None = None
) -> Iterator[None]:
    """Serve each node's API on its loopback port from a thread of this process (no sender loop:
    the caller delivers, so a replay controls exactly when things move). ``streams`` gives a
    party's node its own ``StreamService`` (e.g. over NATS)."""
    from gsomia.api import create_app

    servers = []
    for member in members:
        config = uvicorn.Config(
            create_app(nodes[member.party], stream=(streams or {}).get(member.party)),
            host="127.0.0.1",
            port=member.port,
            log_level="warning",
            lifespan="on",
            ws_per_message_deflate=False,  # never compress secrets beside attacker-chosen data (CRIME/BREACH)
            timeout_graceful_shutdown=2,  # live streams (SSE, WebSocket) must not hold the shutdown
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True, name=f"gsomia-{member.party}")
        thread.start()
        servers.append((server, thread))
    try:
        for member in members:
            _wait_healthy(member.endpoint, 20)
        yield
    finally:
        for server, _ in servers:
            server.should_exit = True
        for _, thread in servers:
            thread.join(timeout=10)


def _wait_healthy(endpoint: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{endpoint}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise ConfigError(f"the node at {endpoint} did not answer within {seconds:.0f} s")
        time.sleep(0.1)


def schema_urls(database_url: str, directory: Path) -> dict[str, str]:
    """One PostgreSQL schema per party in the database ``database_url`` names, created if absent.

    The schemas are named after the network's directory and the party (``gsomia_<hash>_kor``), so
    two networks in one database never share a schema either; each node's URL sets its
    ``search_path`` to its own. A database belongs to one node (the node claims it on first start).
    """
    import hashlib

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            "--database-url is not a SQLAlchemy URL (postgresql+psycopg://user@host/db)"
        ) from exc
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            "--database-url takes a PostgreSQL URL: SQLite nodes each keep their own file in their directory"
        )
    if "options" in url.query:
        raise ConfigError("--database-url must not set options: each node gets its own search_path")
    tag = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:8]
    schemas = {party: f"gsomia_{tag}_{party.lower()}" for party in PARTIES}
    try:
        engine = create_engine(url)
        with engine.begin() as conn:
            for schema in schemas.values():
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        engine.dispose()
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"cannot create the nodes' schemas in {url.render_as_string(hide_password=True)}: "
            f"{type(getattr(exc, 'orig', None) or exc).__name__}"
        ) from exc
    return {
        party: url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
        for party, schema in schemas.items()
    }


def start(directory: Path, database_url: str | None = None) -> list[dict[str, Any]]:
    """Build the network if needed and start each node as its own process.

    ``database_url`` (PostgreSQL) gives each node its own schema in that database; by default each
    node keeps a SQLite file in its directory.
    """
    state_path = directory / STATE_FILE
    if state_path.exists() and any(_alive(n["pid"]) for n in json.loads(state_path.read_text())["nodes"]):
        raise ConfigError(f"a network is already running from {directory}; 'gsomia net down' first")
    urls = schema_urls(database_url, directory) if database_url else None
    members = build(directory, database_urls=urls)
    running: list[dict[str, Any]] = []
    for member in members:
        with open(
            open_private_append(member.directory / "serve.log"), "ab"
        ) as log:  # the child keeps its own
            process = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
                [
                    sys.executable,
                    "-m",
                    "gsomia",
                    "node",
                    "serve",
                    "--dir",
                    str(member.directory),
                    "--port",
                    str(member.port),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _CHILDREN[process.pid] = process
        running.append(
            {
                "party": member.party,
                "pid": process.pid,
                "port": member.port,
                "endpoint": member.endpoint,
                "dir": str(member.directory),
            }
        )
    write_private(state_path, json.dumps({"nodes": running}, indent=2).encode())
    for node in running:
        _wait_healthy(node["endpoint"], 30)
    return running


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(directory: Path) -> list[dict[str, Any]]:
    """Each node: process alive, health answer, outbox counts."""
    state_path = directory / STATE_FILE
    if not state_path.exists():
        raise ConfigError(f"no network in {directory}: 'gsomia net up --dir {directory}' first")
    out = []
    for node in json.loads(state_path.read_text())["nodes"]:
        healthy = False
        try:
            healthy = httpx.get(f"{node['endpoint']}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            healthy = False
        out.append({**node, "alive": _alive(node["pid"]), "healthy": healthy})
    return out


def stop(directory: Path, timeout: float = 10) -> list[dict[str, Any]]:
    """Stop every node process (SIGTERM, then SIGKILL after ``timeout``)."""
    nodes = status(directory)
    for node in nodes:
        if node["alive"]:
            os.killpg(node["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for node in nodes:
        while _alive(node["pid"]) and time.monotonic() < deadline:
            _reap(node["pid"])
            time.sleep(0.1)
        if _alive(node["pid"]):
            os.killpg(node["pid"], signal.SIGKILL)
        _reap(node["pid"])
        node["alive"] = _alive(node["pid"])
    (directory / STATE_FILE).unlink()
    return nodes


def _reap(pid: int) -> None:
    """Collect a child that exited, so it does not linger as a zombie that looks alive."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
