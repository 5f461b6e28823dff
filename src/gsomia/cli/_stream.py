"""``gsomia stream``: the shipped launch records, a launch replayed to a running node, tracks followed."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from gsomia._datafiles import load_catalogue
from gsomia._present import plan_view
from gsomia.cli._common import JsonOpt, console, emit, guard
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import parse_instant
from gsomia.core.tracks import track_update_to_json
from gsomia.demo.scenario import KST, kor_plan, stream_story
from gsomia.errors import ConfigError, NotFoundError
from gsomia.stream import launches, replay

stream_app = typer.Typer(help="The real-time missile-warning stream.", no_args_is_help=True)
Endpoint = Annotated[str, typer.Option("--endpoint", help="The node's base URL, e.g. http://127.0.0.1:8443.")]
Token = Annotated[
    str, typer.Option("--token", envvar="GSOMIA_TOKEN", help="An API token issued by that node.")
]
Year = Annotated[int, typer.Option("--year", help="Which year's shipped launch records.")]


def print_stream_story(out: Console, catalogue: Catalogue) -> None:
    """The stream's routes at the story's instants (the demo's last part)."""
    out.print(
        "\n[bold]Missile-warning stream[/]: where KOR's tracks go (KOR's standing TISA authorisation on file)"
    )
    for moment in stream_story(catalogue):
        plan = moment.plan
        routes = "; ".join(
            f"{r.recipient} {r.name} ({r.decision.agreement})" if r.allowed else f"{r.recipient} refused"
            for r in plan.routes
        )
        until = plan.valid_until.date().isoformat() if plan.valid_until else "no further event"
        out.print(f"  {moment.when[:10]}  {routes}  [dim]— {moment.what}; decided until {until}[/]")


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


@stream_app.command("plan")
@guard
def stream_plan(
    at: Annotated[str, typer.Option("--at", help="The instant (ISO 8601; a bare date is midnight KST).")],
    what_if: Annotated[bool, typer.Option("--what-if", help="Without Korea's 2019 suspension.")] = False,
    authorised: Annotated[
        bool, typer.Option("--authorised/--not-authorised", help="KOR's standing TISA authorisation on file.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Where KOR's missile tracks may go at an instant, and until when that decision holds."""
    plan = kor_plan(load_catalogue(), parse_instant(at, KST), what_if=what_if, authorised=authorised)
    data = plan_view(plan)
    if as_json:
        emit(data)
        return
    for route in data["routes"]:
        if route["allowed"]:
            console().print(f"{route['recipient']}: {route['route']} under {route['agreement']}")
        else:
            console().print(f"{route['recipient']}: refused — {'; '.join(route['why_not'])}")
    console().print(f"decided at {data['at']}, holds until {data['valid_until'] or 'no further event'}")


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
    hub: Annotated[
        str | None, typer.Option(help="The hub (default: the hub the node's agreements name, TISA's USA).")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="ISO 8601 instant the authorisation ends.")] = None,
) -> None:
    """Record this node's standing authorisation for HUB to relay its tracks to RECIPIENT (TISA)."""
    body = {"recipient": recipient, "expires": expires, **({"hub": hub} if hub is not None else {})}
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
