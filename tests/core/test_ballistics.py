"""The ballistic generator: the physics holds, and the shipped 2019 launches fly as published."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.ballistics import (
    EARTH_RADIUS_M,
    MU_EARTH,
    LaunchSpec,
    cross_track_m,
    destination,
    simulate,
    track_updates,
)
from gsomia.errors import InvalidInputError
from gsomia.stream._launches import launches


def _energy(sample_alt: float, speed: float) -> float:
    return speed * speed / 2 - MU_EARTH / (EARTH_RADIUS_M + sample_alt)


@pytest.mark.parametrize("launch", launches(2019), ids=lambda launch: launch.id)
def test_each_2019_launch_reaches_its_published_range_and_apogee(launch: object) -> None:
    flight = launch.fly()  # type: ignore[attr-defined]
    spec = flight.spec
    assert flight.range_m == pytest.approx(spec.range_m, rel=1e-4)
    assert flight.apogee_m == pytest.approx(spec.apogee_m, rel=1e-3)
    # the impact lies on the great circle leaving the site on the bearing, at the range
    assert cross_track_m(spec.lat, spec.lon, spec.bearing_deg, flight.impact_lat, flight.impact_lon) < 1.0
    lat, lon = destination(spec.lat, spec.lon, spec.bearing_deg, spec.range_m)
    assert (flight.impact_lat, flight.impact_lon) == pytest.approx((lat, lon), abs=1e-3)


@settings(max_examples=25, deadline=None)
@given(
    range_km=st.floats(150, 1500),
    apogee_ratio=st.floats(0.08, 1.5),
    bearing=st.floats(0, 359),
)
def test_energy_is_conserved_and_the_arc_rises_then_falls(
    range_km: float, apogee_ratio: float, bearing: float
) -> None:
    flight = simulate(LaunchSpec(39.0, 127.5, bearing, range_km * 1000, range_km * 1000 * apogee_ratio))
    energies = [_energy(s.alt_m, s.speed_mps) for s in flight.samples]
    assert max(energies) - min(energies) < 1e-6 * abs(energies[0])
    alts = [s.alt_m for s in flight.samples]
    top = alts.index(max(alts))
    assert all(a <= b for a, b in itertools.pairwise(alts[: top + 1]))
    assert all(a >= b for a, b in itertools.pairwise(alts[top:]))
    downrange = [s.downrange_m for s in flight.samples]
    assert downrange == sorted(downrange)
    assert flight.samples[-1].alt_m == pytest.approx(0.0, abs=0.05)  # linear interpolation of the crossing


def test_a_lofted_arc_takes_longer_than_a_depressed_one_over_the_same_range() -> None:
    depressed = simulate(LaunchSpec(39.0, 127.5, 80, 450_000, 40_000))
    lofted = simulate(LaunchSpec(39.0, 127.5, 80, 450_000, 910_000))
    assert lofted.duration_s > 3 * depressed.duration_s
    assert lofted.elevation_deg > 60 > depressed.elevation_deg


def test_track_updates_cover_the_flight_once_and_end_final() -> None:
    launch = launches(2019)[0]
    flight = launch.fly()
    updates = track_updates(
        flight, track_id="t", originator="KOR", launched=launch.launched, missile_class="x"
    )
    points = [p for u in updates for p in u.points]
    assert len(points) == len(flight.samples)
    assert [u.final for u in updates].count(True) == 1
    assert updates[-1].final
    assert all(a.quality <= b.quality for a, b in itertools.pairwise(updates))
    assert updates[-1].impact is not None
    assert math.isclose(updates[-1].impact.lat, flight.impact_lat)


def test_impossible_figures_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="range"):
        LaunchSpec(39.0, 127.5, 80, 10, 50_000)
