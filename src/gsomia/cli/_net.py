"""``gsomia net``: a KOR, JPN and USA network on loopback, one process per node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gsomia import network
from gsomia.cli._common import JsonOpt, console, emit, guard

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
    as_json: JsonOpt = False,
) -> None:
    """Create (or reuse) KOR, JPN and USA nodes, exchange their keys, start each as a process."""
    running = network.start(directory, database_url)
    if as_json:
        emit(running)
        return
    for node in running:
        console().print(f"{node['party']}  pid {node['pid']}  {node['endpoint']}  ({node['dir']})")
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
