"""Launch records shipped as data (``gsomia/data/launches/*.toml``), flown into track updates."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gsomia.core.ballistics import Flight, LaunchSpec, simulate, track_updates
from gsomia.core.tracks import TrackUpdate
from gsomia.errors import DataFileError, GsomiaError, NotFoundError

__all__ = ["Launch", "launches", "replay"]


class _LaunchModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    launched: datetime
    site: str
    lat: float
    lon: float
    bearing_deg: float = Field(ge=0, lt=360)
    range_km: float = Field(gt=0)
    apogee_km: float = Field(gt=0)
    missile_class: str
    source: str = Field(min_length=1)


class _LaunchFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    launch: list[_LaunchModel]


@dataclass(frozen=True, slots=True)
class Launch:
    """One public launch record: when, where from, how far and how high, and the source."""

    id: str
    launched: datetime
    site: str
    spec: LaunchSpec
    missile_class: str
    source: str

    def fly(self) -> Flight:
        return simulate(self.spec)


def launches(year: int = 2019) -> tuple[Launch, ...]:
    """The shipped launches of ``year``, in time order."""
    resource = files("gsomia") / "data" / "launches" / f"{year}.toml"
    source = f"gsomia/data/launches/{year}.toml"
    if not resource.is_file():
        raise NotFoundError(f"no launch records for {year} (shipped: gsomia/data/launches/)")
    try:
        parsed = _LaunchFile.model_validate(tomllib.loads(resource.read_text(encoding="utf-8")))
        out = []
        for row in parsed.launch:
            if row.launched.utcoffset() is None:
                raise DataFileError(source, f"{row.id}.launched", "needs a UTC offset")
            spec = LaunchSpec(row.lat, row.lon, row.bearing_deg, row.range_km * 1000, row.apogee_km * 1000)
            out.append(Launch(row.id, row.launched, row.site, spec, row.missile_class, row.source))
    except (ValidationError, tomllib.TOMLDecodeError) as exc:
        raise DataFileError(source, "", str(exc)) from exc
    except DataFileError:
        raise
    except GsomiaError as exc:
        raise DataFileError(source, "", str(exc)) from exc
    return tuple(sorted(out, key=lambda launch: launch.launched))


def replay(
    launch: Launch, *, originator: str, every_s: float = 1.0, track_id: str | None = None
) -> list[TrackUpdate]:
    """The launch's track updates as ``originator`` would publish them, one every ``every_s`` seconds."""
    return track_updates(
        launch.fly(),
        track_id=track_id or f"{originator}-{launch.id}",
        originator=originator,
        launched=launch.launched,
        missile_class=launch.missile_class,
        every_s=every_s,
    )
