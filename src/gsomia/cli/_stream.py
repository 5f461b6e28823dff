"""``gsomia stream``: the shipped launch records, a launch replayed to a running node, tracks followed."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
import typer

from gsomia.cli._common import JsonOpt, console, emit, guard
from gsomia.core.tracks import track_update_to_json
from gsomia.errors import ConfigError, NotFoundError
from gsomia.stream import launches, replay

stream_app = typer.Typer(help="The real-time missile-warning stream.", no_args_is_help=True)
Endpoint = Annotated[str, typer.Option("--endpoint", help="The node's base URL, e.g. http://127.0.0.1:8443.")]
Token = Annotated[
    str, typer.Option("--token", envvar="GSOMIA_TOKEN", help="An API token issued by that node.")
]
Year = Annotated[int, typer.Option("--year", help="Which year's shipped launch records.")]


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _fail(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ConfigError(f"{response.request.url} answered {response.status_code}: {detail}")


@stream_app.command("launches")
@guard
def stream_launches(year: Year = 2019, as_json: JsonOpt = False) -> None:
    """The shipped launch records, with the flight each one gives (range, apogee, time of flight)."""
    rows = []
    for launch in launches(year):
        flight = launch.fly()
        rows.append(
            {
                "id": launch.id,
                "launched": launch.launched.isoformat(),
                "site": launch.site,
                "missile_class": launch.missile_class,
                "range_km": round(flight.range_m / 1000, 1),
                "apogee_km": round(flight.apogee_m / 1000, 1),
                "flight_s": round(flight.duration_s, 1),
                "source": launch.source,
            }
        )
    if as_json:
        emit(rows)
        return
    for row in rows:
        console().print(
            f"{row['id']:<20} {row['missile_class']:<34} {row['range_km']:>6} km"
            f"  apogee {row['apogee_km']:>6} km  {row['flight_s']:>6} s"
        )


@stream_app.command("replay")
@guard
def stream_replay(
    launch_id: Annotated[str, typer.Argument(help="A launch id from 'gsomia stream launches'.")],
    endpoint: Endpoint,
    token: Token,
    year: Year = 2019,
    every: Annotated[float, typer.Option(help="Seconds of flight between two updates.")] = 1.0,
    speed: Annotated[float, typer.Option(help="Replay speed: 1 is real time, 0 as fast as possible.")] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Publish a launch's track, update by update, at the (originating) node at ENDPOINT."""
    base = endpoint.rstrip("/")
    with httpx.Client(timeout=10) as client:
        party = client.get(f"{base}/healthz").json()["party"]
        match = [launch for launch in launches(year) if launch.id == launch_id]
        if not match:
            raise NotFoundError(f"no launch {launch_id!r} in {year}: see 'gsomia stream launches'")
        results: list[dict[str, Any]] = []
        for update in replay(match[0], originator=party, every_s=every):
            if speed > 0:
                time.sleep(every / speed)
            response = client.post(
                f"{base}/stream/tracks", json=track_update_to_json(update), headers=_headers(token)
            )
            _fail(response)
            results.append(response.json())
    if as_json:
        emit({"launch": launch_id, "originator": party, "updates": len(results), "last": results[-1]})
        return
    last = results[-1]
    routes = ", ".join(f"{r['recipient']} {r['route']} ({r['agreement']})" for r in last["routes"]) or "none"
    console().print(f"{len(results)} updates of {launch_id} published at {party}; routes: {routes}")
    for refused in last["refused"]:
        console().print(f"  not to {refused['recipient']}: {'; '.join(refused['failed'])}")


@stream_app.command("authorise")
@guard
def stream_authorise(
    endpoint: Endpoint,
    token: Token,
    recipient: Annotated[str, typer.Option(help="The party the hub may pass the tracks on to.")],
    hub: Annotated[str, typer.Option(help="The hub.")] = "USA",
    expires: Annotated[str | None, typer.Option(help="ISO 8601 instant the authorisation ends.")] = None,
) -> None:
    """Record this node's standing authorisation for HUB to relay its tracks to RECIPIENT (TISA)."""
    body = {"recipient": recipient, "hub": hub, "expires": expires}
    response = httpx.post(f"{endpoint.rstrip('/')}/stream/authorisations", json=body, headers=_headers(token))
    _fail(response)
    emit(response.json())


@stream_app.command("follow")
@guard
def stream_follow(
    endpoint: Endpoint,
    token: Token,
    count: Annotated[
        int, typer.Option(help="Stop after this many updates (0: follow until interrupted).")
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Follow the tracks this person may read at the node at ENDPOINT (Server-Sent Events)."""
    seen = 0
    url = f"{endpoint.rstrip('/')}/stream/tracks/sse"
    with httpx.stream("GET", url, headers=_headers(token), timeout=httpx.Timeout(10, read=None)) as response:
        if response.status_code >= 400:
            response.read()
            _fail(response)
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            track = json.loads(line[6:])
            seen += 1
            if as_json:
                print(json.dumps(track, ensure_ascii=False), flush=True)
            else:
                last = track["points"][-1] if track["points"] else None
                where = (
                    f"{last['lat']:.3f},{last['lon']:.3f} alt {last['alt_m'] / 1000:.1f} km" if last else "-"
                )
                console().print(
                    f"{track['update_ts']}  {track['track_id']}  {track['route']:<8} {where}"
                    f"  q={track['quality']:.2f}{'  FINAL' if track['final'] else ''}"
                )
            if count and seen >= count:
                return
