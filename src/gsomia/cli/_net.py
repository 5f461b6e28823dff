"""``gsomia net``: a KOR, JPN and USA network on loopback, one process per node (or several behind
a load balancer), over HTTPS with mutual TLS between the nodes unless ``--plain-http``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gsomia.cli._common import JsonOpt, console, emit, guard
from gsomia.demo import network
from gsomia.errors import ConfigError

net_app = typer.Typer(help="Start, watch and stop a three-nation network on loopback.", no_args_is_help=True)
NetDir = Annotated[Path, typer.Option("--dir", help="Directory holding the three nodes.")]


@net_app.command("up")
@guard
def net_up(
    directory: NetDir,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="GSOMIA_DATABASE_URL",
            help="PostgreSQL URL: each node gets its own schema in that database (default: a SQLite "
            "file in each node's directory). The password, if any, is kept out of node.toml.",
        ),
    ] = None,
    nats: Annotated[
        str | None,
        typer.Option(help="NATS JetStream URL (nats://host:4222): each node's track stream goes through it."),
    ] = None,
    replicas: Annotated[
        int,
        typer.Option(
            help="Processes per node, behind HAProxy on the node's endpoint (above 1 needs --database-url "
            "and --nats: the processes share the node's database and stream)."
        ),
    ] = 1,
    plain_http: Annotated[
        bool,
        typer.Option(
            "--plain-http",
            help="Serve plain HTTP on loopback, for a demo: no TLS, and nodes call each other without "
            "certificates (by default a local authority certifies each node for HTTPS and mutual TLS).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create (or reuse) KOR, JPN and USA nodes, exchange their keys, start each as a process (or
    as --replicas processes behind a load balancer). Over HTTPS by default: a local authority
    (DIR/tls/ca.crt) certifies each node, the nodes call each other over mutual TLS, and each
    identity document names its node's certificate; clients trust DIR/tls/ca.crt (SSL_CERT_FILE)."""
    running = network.start(directory, database_url, replicas=replicas, nats=nats, tls=not plain_http)
    if as_json:
        emit(running)
        return
    for node in running:
        own = f" (process at {node['process']})" if replicas > 1 else ""
        console().print(f"{node['party']}  pid {node['pid']}  {node['endpoint']}{own}  ({node['dir']})")
    if not plain_http:
        ca = directory / network.CA_FILE
        console().print(
            f"HTTPS, mutual TLS between nodes; clients trust the local authority: SSL_CERT_FILE={ca}"
        )
    console().print(f"tokens: {directory}/<party>/tokens.json; stop with: gsomia net down --dir {directory}")


@net_app.command("status")
@guard
def net_status(directory: NetDir, as_json: JsonOpt = False) -> None:
    """Whether each node's process is alive and answering."""
    nodes = network.status(directory)
    if as_json:
        emit(nodes)
        return
    for node in nodes:
        state = (
            "up"
            if node["alive"] and node["healthy"]
            else ("alive, not answering" if node["alive"] else "down")
        )
        console().print(f"{node['party']}  pid {node['pid']}  {node['endpoint']}  {state}")


@net_app.command("down")
@guard
def net_down(directory: NetDir, as_json: JsonOpt = False) -> None:
    """Stop every node of the network."""
    nodes = network.stop(directory)
    if as_json:
        emit(nodes)
        return
    for node in nodes:
        console().print(
            f"{node['party']}  pid {node['pid']}  {'still alive!' if node['alive'] else 'stopped'}"
        )


PartyArg = Annotated[str, typer.Argument(help="KOR, JPN or USA.")]


@net_app.command("endpoint")
@guard
def net_endpoint(directory: NetDir, party: PartyArg) -> None:
    """Print one node's URL (for --endpoint), e.g. JPN=$(gsomia net endpoint --dir ./net JPN)."""
    for node in network.status(directory):
        if node["party"] == party.upper():
            print(node["endpoint"])
            return
    raise ConfigError(f"no {party.upper()} node in the network at {directory}")


@net_app.command("token")
@guard
def net_token(
    directory: NetDir,
    party: PartyArg,
    person: Annotated[str, typer.Argument(help="admin, officer or analyst.")] = "analyst",
) -> None:
    """Print the API token of one of a node's people (for --token), from <party>/tokens.json."""
    path = directory / party.lower() / "tokens.json"
    try:
        tokens = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: no tokens here; run 'gsomia net up --dir {directory}' first") from exc
    if person not in tokens:
        raise ConfigError(f"{path} has no token for {person!r}; it has: {', '.join(sorted(tokens))}")
    print(tokens[person])
