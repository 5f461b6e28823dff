"""Ballistic flight of a missile, for realistic tracks from a launch's public figures.

A point mass flies over a spherical, non-rotating Earth under inverse-square gravity,
integrated numerically (classical fourth-order Runge-Kutta) in the plane of the great
circle through the launch site along its bearing; the ground track is that great circle.
:func:`solve_launch` finds the burnout speed and flight-path angle that reach a given
range and apogee: the Keplerian ellipse through both gives the first guess, Newton's
method on the integrated flight refines it. No atmosphere and no boost phase: public
figures (range, apogee) describe the ballistic arc, which is what a warning predicts.

>>> spec = LaunchSpec(39.0, 127.5, 80.0, 400_000.0, 50_000.0)
>>> flight = simulate(spec)
>>> round(flight.range_m / 1000), round(flight.apogee_m / 1000)
(400, 50)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from gsomia.core.instants import require_aware
from gsomia.core.tracks import GeoFix, TrackPoint, TrackUpdate
from gsomia.errors import InvalidInputError

__all__ = [
    "EARTH_RADIUS_M",
    "MU_EARTH",
    "Flight",
    "LaunchSpec",
    "Sample",
    "cross_track_m",
    "destination",
    "simulate",
    "solve_launch",
    "track_updates",
]

MU_EARTH = 3.986004418e14  # m^3/s^2, WGS 84 gravitational parameter
EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)

_State = tuple[float, float, float, float]  # x, y, vx, vy in the flight plane (m, m/s)


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Where from, which way, how far, how high (metres, degrees)."""

    lat: float
    lon: float
    bearing_deg: float
    range_m: float
    apogee_m: float

    def __post_init__(self) -> None:
        if not (-90 <= self.lat <= 90 and -180 <= self.lon <= 180):
            raise InvalidInputError("launch site: latitude in [-90, 90], longitude in [-180, 180]")
        if not 1_000 <= self.range_m <= 15_000_000:
            raise InvalidInputError("range: between 1 km and 15,000 km")
        if not 1_000 <= self.apogee_m <= 5_000_000:
            raise InvalidInputError("apogee: between 1 km and 5,000 km")


@dataclass(frozen=True, slots=True)
class Sample:
    """The flight at ``t_s`` seconds after launch."""

    t_s: float
    lat: float
    lon: float
    alt_m: float
    speed_mps: float
    downrange_m: float


@dataclass(frozen=True, slots=True)
class Flight:
    """An integrated flight: samples from launch to impact, and what it reached."""

    spec: LaunchSpec
    speed_mps: float
    elevation_deg: float
    samples: tuple[Sample, ...]
    range_m: float
    apogee_m: float
    duration_s: float
    impact_lat: float
    impact_lon: float


def destination(lat: float, lon: float, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    """The point ``distance_m`` along the great circle leaving (lat, lon) on ``bearing_deg``."""
    phi1, lam1, theta = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    delta = distance_m / EARTH_RADIUS_M
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta))
    lam2 = lam1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * math.sin(phi2),
    )
    lon2 = (math.degrees(lam2) + 540) % 360 - 180
    return math.degrees(phi2), lon2


def cross_track_m(lat: float, lon: float, bearing_deg: float, point_lat: float, point_lon: float) -> float:
    """Distance of a point from the great circle through (lat, lon) on ``bearing_deg``."""
    phi1, lam1 = math.radians(lat), math.radians(lon)
    phi3, lam3 = math.radians(point_lat), math.radians(point_lon)
    d13 = math.acos(
        max(
            -1.0,
            min(
                1.0, math.sin(phi1) * math.sin(phi3) + math.cos(phi1) * math.cos(phi3) * math.cos(lam3 - lam1)
            ),
        )
    )
    theta13 = math.atan2(
        math.sin(lam3 - lam1) * math.cos(phi3),
        math.cos(phi1) * math.sin(phi3) - math.sin(phi1) * math.cos(phi3) * math.cos(lam3 - lam1),
    )
    return abs(math.asin(math.sin(d13) * math.sin(theta13 - math.radians(bearing_deg))) * EARTH_RADIUS_M)


def _accel(x: float, y: float) -> tuple[float, float]:
    r3 = (x * x + y * y) ** 1.5
    return -MU_EARTH * x / r3, -MU_EARTH * y / r3


def _rk4(s: _State, dt: float) -> _State:
    x, y, vx, vy = s
    a1x, a1y = _accel(x, y)
    x2, y2, vx2, vy2 = x + 0.5 * dt * vx, y + 0.5 * dt * vy, vx + 0.5 * dt * a1x, vy + 0.5 * dt * a1y
    a2x, a2y = _accel(x2, y2)
    x3, y3, vx3, vy3 = x + 0.5 * dt * vx2, y + 0.5 * dt * vy2, vx + 0.5 * dt * a2x, vy + 0.5 * dt * a2y
    a3x, a3y = _accel(x3, y3)
    x4, y4, vx4, vy4 = x + dt * vx3, y + dt * vy3, vx + dt * a3x, vy + dt * a3y
    a4x, a4y = _accel(x4, y4)
    return (
        x + dt / 6 * (vx + 2 * vx2 + 2 * vx3 + vx4),
        y + dt / 6 * (vy + 2 * vy2 + 2 * vy3 + vy4),
        vx + dt / 6 * (a1x + 2 * a2x + 2 * a3x + a4x),
        vy + dt / 6 * (a1y + 2 * a2y + 2 * a3y + a4y),
    )


def _integrate(speed: float, gamma: float, dt: float) -> list[tuple[float, _State]]:
    """States from launch (on the surface, at x=0) to the surface crossing, interpolated there.

    The flight plane has the Earth's centre at the origin and the launch site on +y; +x is
    downrange. The last state lies on the surface.
    """
    state: _State = (0.0, EARTH_RADIUS_M, speed * math.cos(gamma), speed * math.sin(gamma))
    out = [(0.0, state)]
    t = 0.0
    for _ in range(1_000_000):
        nxt = _rk4(state, dt)
        t += dt
        if math.hypot(nxt[0], nxt[1]) < EARTH_RADIUS_M:
            h0 = math.hypot(state[0], state[1]) - EARTH_RADIUS_M
            h1 = math.hypot(nxt[0], nxt[1]) - EARTH_RADIUS_M
            f = h0 / (h0 - h1)
            crossing = tuple(a + f * (b - a) for a, b in zip(state, nxt, strict=True))
            out.append((t - dt + f * dt, crossing))  # type: ignore[arg-type]
            return out
        state = nxt
        out.append((t, state))
    raise InvalidInputError("the flight did not come down: escape speed or an endless arc")


def _reached(states: list[tuple[float, _State]]) -> tuple[float, float]:
    """(surface range, apogee) of an integrated flight."""
    x, y = states[-1][1][0], states[-1][1][1]
    top = max(math.hypot(s[0], s[1]) for _, s in states)
    return math.atan2(x, y) * EARTH_RADIUS_M, top - EARTH_RADIUS_M


def _kepler(range_m: float, apogee_m: float) -> tuple[float, float]:
    """Speed and flight-path angle at the surface of the ellipse through both figures.

    The apse line bisects the arc; with r_a at apoapsis and the surface at true anomaly
    pi - phi/2: e = (r_a - R) / (r_a - R cos(phi/2)), p = r_a (1 - e), then vis-viva.
    """
    phi = range_m / EARTH_RADIUS_M
    r_a = EARTH_RADIUS_M + apogee_m
    e = (r_a - EARTH_RADIUS_M) / (r_a - EARTH_RADIUS_M * math.cos(phi / 2))
    p = r_a * (1 - e)
    a = p / (1 - e * e)
    speed = math.sqrt(MU_EARTH * (2 / EARTH_RADIUS_M - 1 / a))
    h = math.sqrt(MU_EARTH * p)
    gamma = math.acos(min(1.0, h / (EARTH_RADIUS_M * speed)))
    return speed, gamma


def solve_launch(
    range_m: float, apogee_m: float, *, dt: float = 0.25, tol_m: float = 1.0
) -> tuple[float, float]:
    """(speed m/s, flight-path angle rad) at the surface that reach ``range_m`` and ``apogee_m``."""
    speed, gamma = _kepler(range_m, apogee_m)
    for _ in range(8):
        got_range, got_apogee = _reached(_integrate(speed, gamma, dt))
        err = (got_range - range_m, got_apogee - apogee_m)
        if abs(err[0]) < tol_m and abs(err[1]) < tol_m:
            return speed, gamma
        dv, dg = speed * 1e-6, 1e-6
        r_v, a_v = _reached(_integrate(speed + dv, gamma, dt))
        r_g, a_g = _reached(_integrate(speed, gamma + dg, dt))
        j = ((r_v - got_range) / dv, (r_g - got_range) / dg, (a_v - got_apogee) / dv, (a_g - got_apogee) / dg)
        det = j[0] * j[3] - j[1] * j[2]
        speed -= (j[3] * err[0] - j[1] * err[1]) / det
        gamma -= (-j[2] * err[0] + j[0] * err[1]) / det
    raise InvalidInputError(f"no ballistic arc reaches {range_m:.0f} m at an apogee of {apogee_m:.0f} m")


def simulate(spec: LaunchSpec, *, dt: float = 0.25) -> Flight:
    """The flight of ``spec``: solved, integrated, laid on the great circle along its bearing."""
    speed, gamma = solve_launch(spec.range_m, spec.apogee_m, dt=dt)
    states = _integrate(speed, gamma, dt)
    samples = []
    for t, (x, y, vx, vy) in states:
        downrange = math.atan2(x, y) * EARTH_RADIUS_M
        lat, lon = destination(spec.lat, spec.lon, spec.bearing_deg, downrange)
        samples.append(Sample(t, lat, lon, math.hypot(x, y) - EARTH_RADIUS_M, math.hypot(vx, vy), downrange))
    range_m, apogee_m = _reached(states)
    last = samples[-1]
    return Flight(
        spec=spec,
        speed_mps=speed,
        elevation_deg=math.degrees(gamma),
        samples=tuple(samples),
        range_m=range_m,
        apogee_m=apogee_m,
        duration_s=last.t_s,
        impact_lat=last.lat,
        impact_lon=last.lon,
    )


def track_updates(
    flight: Flight,
    *,
    track_id: str,
    originator: str,
    launched: datetime,
    missile_class: str,
    every_s: float = 1.0,
) -> list[TrackUpdate]:
    """The flight as a warning system would share it: one update every ``every_s`` seconds.

    Each update carries the samples since the previous one and the estimated impact point;
    the estimate's quality grows as the flight goes on; the last update is ``final``.
    """
    require_aware(launched, "launch instant")
    launch = GeoFix(flight.spec.lat, flight.spec.lon, launched)
    impact = GeoFix(flight.impact_lat, flight.impact_lon, launched + timedelta(seconds=flight.duration_s))
    updates: list[TrackUpdate] = []
    pending: list[TrackPoint] = []
    next_at = every_s
    for index, sample in enumerate(flight.samples):
        at = launched + timedelta(seconds=sample.t_s)
        pending.append(TrackPoint(at, sample.lat, sample.lon, max(sample.alt_m, 0.0), sample.speed_mps))
        last = index == len(flight.samples) - 1
        if sample.t_s + 1e-9 >= next_at or last:
            progress = sample.t_s / flight.duration_s if flight.duration_s else 1.0
            updates.append(
                TrackUpdate(
                    track_id=track_id,
                    originator=originator,
                    update_ts=at,
                    launch=launch,
                    impact=impact,
                    points=tuple(pending),
                    missile_class=missile_class,
                    quality=round(0.5 + 0.49 * progress, 4),
                    final=last,
                )
            )
            pending = []
            next_at = sample.t_s + every_s
    return updates
