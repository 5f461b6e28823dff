"""A three-nation network (KOR, JPN, USA) on loopback: built, started, watched and stopped.

``build`` lays out one node directory per party with its people, tokens and the other
two nodes registered as peers for every agreement the pair shares (the out-of-band
exchange of identity documents, done here by hand). With ``tls`` it also makes a small local
certificate authority (``tls/ca.crt`` in the network's directory, its key beside it) and a
certificate for each node (``tls.crt``, ``tls.key`` and the authority's ``ca.crt`` in the node's
directory, named in its ``node.toml``): the nodes serve HTTPS and call each other over mutual TLS,
each identity document naming its node's certificate by its pin. ``start`` runs each node as its
own process (``gsomia node serve``); ``serve_in_threads`` runs them inside this process
instead, with a clock passed in, for the demo and the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gsomia._files import open_private_append, private_dir, write_private
from gsomia.core.catalogue import Catalogue
from gsomia.core.policy import assumed_assurances
from gsomia.crypto.tls import Issued, issue, make_ca
from gsomia.errors import ConfigError, InvalidInputError, NotFoundError
from gsomia.node import Clock, Node, init_node_dir, load_config, set_endpoint, set_tls, system_clock

__all__ = [
    "CA_FILE",
    "PARTIES",
    "NetNode",
    "build",
    "open_nodes",
    "serve_command",
    "serve_in_threads",
    "start",
    "status",
    "stop",
    "trust",
]

PARTIES = ("KOR", "JPN", "USA")
TOPICS = ["dprk-missile", "dprk-nuclear", "prc-navy"]
STATE_FILE = "net.json"
# Node processes this process started: kept so they are reaped (not left as zombies) when stopped here.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


CA_DIR = "tls"  # the network's local authority: tls/ca.crt and tls/ca.key
CA_FILE = f"{CA_DIR}/ca.crt"
NODE_TLS = {"tls_cert": "tls.crt", "tls_key": "tls.key", "tls_ca": "ca.crt"}  # in each node's directory


@dataclass(frozen=True, slots=True)
class NetNode:
    party: str
    directory: Path
    port: int
    tls: bool = False

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


def _authority(directory: Path) -> Issued:
    """The network's local certificate authority, made at the first build with TLS."""
    cert, key = directory / CA_FILE, directory / CA_DIR / "ca.key"
    if cert.exists() and key.exists():
        return Issued(cert.read_bytes(), key.read_bytes())
    ca = make_ca(f"gsomia network {directory.name} local authority", datetime.now(UTC))
    private_dir(directory / CA_DIR)
    write_private(key, ca.key)
    write_private(cert, ca.certificate)
    return ca


def _node_tls(member: NetNode, ca: Issued | None) -> None:
    """Give ``member`` its certificate from ``ca`` (kept if it has one from that authority), or, without
    ``ca``, none: its ``node.toml`` names its TLS files or no TLS files."""
    if ca is None:
        set_tls(member.directory, None, None, None)
        return
    ca_path = member.directory / NODE_TLS["tls_ca"]
    if not ca_path.exists() or ca_path.read_bytes() != ca.certificate:
        issued = issue(ca, f"gsomia {member.party} node", ("127.0.0.1", "localhost"), datetime.now(UTC))
        write_private(member.directory / NODE_TLS["tls_key"], issued.key)
        write_private(member.directory / NODE_TLS["tls_cert"], issued.certificate)
        write_private(ca_path, ca.certificate)
    set_tls(member.directory, NODE_TLS["tls_cert"], NODE_TLS["tls_key"], NODE_TLS["tls_ca"])


def trust(directory: Path) -> ssl.SSLContext | bool:
    """What a client of the network's nodes verifies their certificates with: the network's
    authority when it has one (else the system's)."""
    ca = directory / CA_FILE
    return ssl.create_default_context(cafile=str(ca)) if ca.exists() else True


# Ports this process chose for servers it starts, each held by a socket bound to it (free_port).
_HELD: dict[int, socket.socket] = {}
_HELD_LOCK = threading.Lock()

START_S = 300.0
"""How long a server is given to answer once started: generous, since on a loaded machine a node
process's imports alone can take a minute; a server that stops first is reported at once."""


def free_port() -> int:
    """A loopback port for a server this process is about to start (in a thread or a child process).

    The port stays held here until :func:`release_ports`: bound, with ``SO_REUSEADDR``, and not
    listening. A caller is refused as by a free port, and the server, binding it with
    ``SO_REUSEADDR`` (as uvicorn, HAProxy and NATS do), takes it; nothing else can, neither a bind
    to port 0 nor an outgoing connection's local port, between the choice and the server's start
    (or between a server's stop and its restart). A port merely found free and let go could be
    taken meanwhile, by any process on the machine ("address already in use").
    """
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    except OSError:
        sock.close()
        raise
    with _HELD_LOCK:
        _HELD[port] = sock
    return port


def release_ports() -> None:
    """Let go of every port :func:`free_port` holds (a server listening on one keeps it)."""
    with _HELD_LOCK:
        held = list(_HELD.values())
        _HELD.clear()
    for sock in held:
        sock.close()


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
        try:
            node.people.person(str(person["id"]))
        except NotFoundError:
            node.people.add_person(None, {**person, "nationality": node.party})
        tokens[str(person["id"])] = node.credentials.issue(None, str(person["id"]), days=365)[1]
    return tokens


def build(
    directory: Path,
    *,
    ports: dict[str, int] | None = None,
    clock: Clock = system_clock,
    database_urls: dict[str, str] | None = None,
    tls: bool = False,
) -> list[NetNode]:
    """Create (or reuse) the three node directories and register each node with the other two.

    ``database_urls`` puts a party's node on another store (PostgreSQL); SQLite by default. With
    ``tls``, each node gets a certificate from the network's local authority (made here once) and
    serves HTTPS, calling its partners over mutual TLS; without, plain HTTP (a loopback demo).
    """
    private_dir(directory)
    chosen = ports or {party: free_port() for party in PARTIES}
    members = [NetNode(p, directory / p.lower(), chosen[p], tls) for p in PARTIES]
    ca = _authority(directory) if tls else None
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
        _node_tls(member, ca)
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
    assure(nodes)
    for node in nodes.values():
        node.close()
    return members


def assure(nodes: dict[str, Node]) -> None:
    """The assurances before provision (Art. 7(5)) the record implies, an assumption each
    agreement's data states: each party's node gives its assurance under each of its agreements,
    dated at the agreement's entry into force, and every partner whose link serves the agreement
    imports the signed document (the demo's nodes share a machine; elsewhere it travels as an
    ``assurance`` message or a file). A node that has given one already gives none again."""
    for node in nodes.values():
        own = {r.agreement for r in node.exchange.assurance_store.all() if r.party == node.party}
        for assumed in assumed_assurances(node.catalogue):
            if assumed.party != node.party or assumed.agreement in own:
                continue
            row = node.exchange.give_assurance(
                None, assumed.agreement, assumed.reference, given_at=assumed.given_at, send=False
            )
            document = node.exchange.assurance_document(None, row.id)
            for other in nodes.values():
                if other is not node and assumed.agreement in other.exchange.links(node.party):
                    other.exchange.import_assurance(None, document)


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
    from gsomia.api import create_app, server_config

    servers = []
    for member in members:
        node = nodes[member.party]
        config = server_config(
            create_app(node, stream=(streams or {}).get(member.party)),
            node.config.tls,  # HTTPS and mutual TLS when the node has TLS files
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
        for member, (_, thread) in zip(members, servers, strict=True):
            _wait_healthy(member.endpoint, START_S, _verify(nodes[member.party]), alive=thread.is_alive)
        yield
    finally:
        for server, _ in servers:
            server.should_exit = True
        for _, thread in servers:
            thread.join(timeout=10)


def _verify(node: Node) -> ssl.SSLContext | bool:
    tls = node.config.tls
    return True if tls is None else ssl.create_default_context(cafile=str(tls.ca))


def _wait_healthy(
    endpoint: str,
    seconds: float,
    verify: ssl.SSLContext | bool = True,
    *,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> None:
    """Until ``endpoint`` answers ``/healthz``: a ``ConfigError`` after ``seconds``, or at once when
    ``alive`` says the server (its process, its thread) has stopped; ``log`` is where it wrote why."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{endpoint}/healthz", timeout=5, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        see = f" (see {log})" if log is not None else ""
        if alive is not None and not alive():
            raise ConfigError(f"the server for {endpoint} stopped before it answered{see}")
        if time.monotonic() > deadline:
            raise ConfigError(f"the node at {endpoint} did not answer within {seconds:.0f} s{see}")
        time.sleep(0.1)


def schema_names(directory: Path) -> dict[str, str]:
    """The PostgreSQL schema of each party's node of the network in ``directory`` (``schema_urls``)."""
    import hashlib

    tag = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:8]
    return {party: f"gsomia_{tag}_{party.lower()}" for party in PARTIES}


def schema_urls(database_url: str, directory: Path) -> dict[str, str]:
    """One PostgreSQL schema per party in the database ``database_url`` names, created if absent.

    The schemas are named after the network's directory and the party (``gsomia_<hash>_kor``), so
    two networks in one database never share a schema either; each node's URL sets its
    ``search_path`` to its own. A database belongs to one node (the node claims it on first start).
    """
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
    schemas = schema_names(directory)
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


MAX_REPLICAS = 8
BALANCER_FILE = "haproxy.cfg"


def serve_command(member: NetNode, *options: str, port: int | None = None) -> list[str]:
    """The command line of ``gsomia node serve`` for ``member`` on ``port`` (its own by default), with
    ``options`` (``--no-sender``, ``--stream-nats URL``, ...), run by this interpreter: one process of
    the node, as the demo, the tests and the benchmarks start them."""
    where = ["--dir", str(member.directory), "--port", str(member.port if port is None else port)]
    return [sys.executable, "-m", "gsomia", "node", "serve", *where, *options]


def _serve_process(member: NetNode, port: int, log_name: str, nats: str | None) -> subprocess.Popen[bytes]:
    """``gsomia node serve`` for ``member`` on ``port``, in a session of its own, logging to its file."""
    command = serve_command(member, *(["--stream-nats", nats] if nats is not None else []), port=port)
    with open(open_private_append(member.directory / log_name), "ab") as log:  # the child keeps its own
        process = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
            command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    _CHILDREN[process.pid] = process
    return process


def balancer_config(backends: dict[NetNode, list[int]], *, tls: bool = False) -> str:
    """HAProxy's configuration: each node's endpoint balanced over its processes' ports, a process
    that stops (refuses connections) taken out within two seconds, one that accepts but has not
    answered ``/healthz`` within 5 s, twice, within about twelve; streams (SSE, WebSocket) kept
    open for an hour. With ``tls`` the balancer passes each TLS connection through whole (``mode
    tcp``): the process ends it, so it sees the client's certificate (mutual TLS between nodes)."""
    lines = [
        "global",
        "    maxconn 4096",
        "defaults",
        # in http mode each caller's own address reaches the processes (X-Forwarded-For): their
        # budgets of requests without credentials are counted by it, not by the balancer's
        *(
            ["    mode tcp"]
            if tls
            else ["    mode http", "    option http-server-close", "    option forwardfor"]
        ),
        "    timeout connect 2s",
        # a busy process answers /healthz after the requests queued before it (at 200 clients on
        # one process, ~0.7 s and more): with the check's default time-out (inter, 1 s) the only
        # process of a node was taken out under load and every request refused with 503
        "    timeout check 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout tunnel 1h",
        "    retries 2",
        "    option redispatch 1",  # every retry to another process: a dead one refuses at once
    ]
    for member, ports in backends.items():
        name = member.party.lower()
        lines += [
            f"frontend {name}",
            f"    bind 127.0.0.1:{member.port}",
            f"    default_backend {name}_processes",
            f"backend {name}_processes",
            "    balance roundrobin",
            "    option httpchk GET /healthz",
            "    http-check expect status 200",
        ]
        check = " check-ssl verify none" if tls else ""  # a health check only: the nodes verify peers
        lines += [
            f"    server {name}{n} 127.0.0.1:{port} check{check} inter 1s fall 2 rise 1"
            for n, port in enumerate(ports)
        ]
    return "\n".join(lines) + "\n"


def start(
    directory: Path,
    database_url: str | None = None,
    *,
    replicas: int = 1,
    nats: str | None = None,
    tls: bool = False,
) -> list[dict[str, Any]]:
    """Build the network if needed and start each node as its own process.

    ``database_url`` (PostgreSQL) gives each node its own schema in that database; by default each
    node keeps a SQLite file in its directory. ``nats`` fans each node's track stream out through
    NATS JetStream. With ``replicas`` above one, each node is that many processes behind HAProxy
    (the distribution's ``haproxy``, started here and stopped by :func:`stop`) on the node's
    endpoint; that needs PostgreSQL and NATS, which the processes of a node share. With ``tls`` the
    nodes serve HTTPS and call each other over mutual TLS (:func:`build`).
    """
    if not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidInputError(f"--replicas must be 1 to {MAX_REPLICAS}")
    haproxy = None
    if replicas > 1:
        if database_url is None or not database_url.startswith("postgresql"):
            raise InvalidInputError(
                "--replicas above 1 needs --database-url postgresql+psycopg://...: the processes of a "
                "node share its database, and SQLite is the one-process embedded store"
            )
        if nats is None:
            raise InvalidInputError(
                "--replicas above 1 needs --nats nats://...: the processes of a node share its track "
                "stream through NATS JetStream"
            )
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise ConfigError(
                "--replicas needs HAProxy: install the distribution's (apt-get install haproxy)"
            )
    state_path = directory / STATE_FILE
    if state_path.exists() and any(_alive(n["pid"]) for n in _processes(json.loads(state_path.read_text()))):
        raise ConfigError(f"a network is already running from {directory}; 'gsomia net down' first")
    urls = schema_urls(database_url, directory) if database_url else None
    members = build(directory, database_urls=urls, tls=tls)
    verify = trust(directory) if tls else True
    scheme = "https" if tls else "http"
    running: list[dict[str, Any]] = []
    backends: dict[NetNode, list[int]] = {}
    for member in members:
        ports = [member.port] if replicas == 1 else [free_port() for _ in range(replicas)]
        backends[member] = ports
        for n, port in enumerate(ports):
            log_name = "serve.log" if replicas == 1 else f"serve-{n}.log"
            process = _serve_process(member, port, log_name, nats)
            running.append(
                {
                    "party": member.party,
                    "pid": process.pid,
                    "port": port,
                    "endpoint": member.endpoint,  # the node's: the balancer's, with replicas
                    "process": f"{scheme}://127.0.0.1:{port}",  # this process's own
                    "dir": str(member.directory),
                    "replica": n,
                }
            )
    state: dict[str, Any] = {"nodes": running}
    try:
        for node in running:
            log_path = Path(node["dir"]) / ("serve.log" if replicas == 1 else f"serve-{node['replica']}.log")
            _wait_healthy(
                node["process"], START_S, verify, alive=_running(_CHILDREN[node["pid"]]), log=log_path
            )
        if haproxy is not None:
            config = directory / BALANCER_FILE
            write_private(config, balancer_config(backends, tls=tls).encode())
            with open(open_private_append(directory / "haproxy.log"), "ab") as log:
                balancer = subprocess.Popen(  # noqa: S603 - the distribution's haproxy, our configuration
                    [haproxy, "-db", "-f", str(config)],
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            _CHILDREN[balancer.pid] = balancer
            state["balancer"] = {"pid": balancer.pid, "config": str(config)}
            for member in members:
                _wait_healthy(
                    member.endpoint,
                    START_S,
                    verify,
                    alive=_running(balancer),
                    log=directory / "haproxy.log",
                )
    finally:
        write_private(state_path, json.dumps(state, indent=2).encode())
    return running


def _running(child: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: child.poll() is None


def _processes(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process a network's state file names: the nodes' and the balancer's."""
    balancer = state.get("balancer")
    return [*state["nodes"], *([balancer] if balancer else [])]


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
    verify = trust(directory)
    for node in json.loads(state_path.read_text())["nodes"]:
        healthy = False
        try:
            own = node.get("process", node["endpoint"])  # a state file from before names no process
            healthy = httpx.get(f"{own}/healthz", timeout=2, verify=verify).status_code == 200
        except httpx.TransportError:
            healthy = False
        out.append({**node, "alive": _alive(node["pid"]), "healthy": healthy})
    return out


def stop(directory: Path, timeout: float = 10) -> list[dict[str, Any]]:
    """Stop every node process and the balancer, if any (SIGTERM, then SIGKILL after ``timeout``)."""
    nodes = status(directory)
    balancer = json.loads((directory / STATE_FILE).read_text()).get("balancer")
    processes = [*([dict(balancer, party="balancer")] if balancer else []), *nodes]
    for process in processes:
        if _alive(process["pid"]):
            os.killpg(process["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        while _alive(process["pid"]) and time.monotonic() < deadline:
            _reap(process["pid"])
            time.sleep(0.1)
        if _alive(process["pid"]):
            os.killpg(process["pid"], signal.SIGKILL)
        _reap(process["pid"])
        process["alive"] = _alive(process["pid"])
    (directory / STATE_FILE).unlink()
    return processes


def _reap(pid: int) -> None:
    """Collect a child that exited, so it does not linger as a zombie that looks alive."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
