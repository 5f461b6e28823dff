"""Build the dashboard's map outlines from Natural Earth (via the world-atlas npm package).

Run once by hand; the small result is committed as package data, so nothing is fetched at run
time. Needs ``shapely`` (``pip install shapely``), used here only, and the world-atlas package:

    npm pack world-atlas && tar xzf world-atlas-*.tgz
    python scripts/build_outlines.py package/countries-50m.json src/gsomia/ui/maps/korea-japan.json

world-atlas (ISC licence) redistributes Natural Earth's 1:50m admin-0 countries (public domain)
as TopoJSON. The script decodes the TopoJSON arcs, keeps the countries around the Korean
peninsula and Japan, crops them to the map's window, simplifies them and projects them to SVG
path data with the same projection the page uses for tracks (``projection`` in the output).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.geometry.base import BaseGeometry

# The window (degrees) and the scale: an equirectangular projection true at the window's mid-latitude.
WEST, EAST, SOUTH, NORTH = 120.0, 150.0, 30.0, 46.0
PX_PER_DEGREE = 32.0
TOLERANCE = 0.03  # degrees (about 3 km): the outline stays recognisable at this scale
# ISO 3166-1 numeric codes of the countries drawn, and the trigraph each is labelled with.
COUNTRIES = {"410": "KOR", "408": "PRK", "392": "JPN", "156": "CHN", "643": "RUS"}


def _arcs(topology: dict[str, Any]) -> list[list[tuple[float, float]]]:
    """TopoJSON arcs, de-quantised (the delta encoding and the transform undone)."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    out = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        out.append(points)
    return out


def _ring(indices: list[int], arcs: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for index in indices:
        arc = arcs[index] if index >= 0 else list(reversed(arcs[~index]))
        points.extend(arc if not points else arc[1:])  # consecutive arcs share an end point
    return points


def _geometry(obj: dict[str, Any], arcs: list[list[tuple[float, float]]]) -> BaseGeometry:
    polygons = obj["arcs"] if obj["type"] == "MultiPolygon" else [obj["arcs"]]
    return shape(
        {
            "type": "MultiPolygon",
            "coordinates": [[_ring(ring, arcs) for ring in polygon] for polygon in polygons],
        }
    )


def _path(geometry: BaseGeometry, kx: float) -> str:
    parts = geometry.geoms if isinstance(geometry, MultiPolygon) else [geometry]
    commands = []
    for part in parts:
        if not isinstance(part, Polygon) or part.is_empty:
            continue
        for ring in (part.exterior, *part.interiors):
            xy = [
                f"{(lon - WEST) * kx:.1f},{(NORTH - lat) * PX_PER_DEGREE:.1f}"
                for lon, lat in ring.coords[:-1]
            ]
            commands.append("M" + "L".join(xy) + "Z")
    return "".join(commands)


def main(source: Path, target: Path) -> None:
    topology = json.loads(source.read_text(encoding="utf-8"))
    arcs = _arcs(topology)
    window = box(WEST, SOUTH, EAST, NORTH)
    kx = PX_PER_DEGREE * math.cos(math.radians((SOUTH + NORTH) / 2))
    countries = []
    for obj in topology["objects"]["countries"]["geometries"]:
        code = COUNTRIES.get(str(obj.get("id")))
        if code is None:
            continue
        clipped = _geometry(obj, arcs).buffer(0).intersection(window)
        simplified = clipped.simplify(TOLERANCE, preserve_topology=True)
        if simplified.is_empty:
            continue
        countries.append({"code": code, "name": obj["properties"]["name"], "d": _path(simplified, kx)})
    result = {
        "source": "Natural Earth 1:50m admin-0 countries (public domain), via world-atlas 2.0.2 (ISC)",
        "projection": {
            "west": WEST,
            "east": EAST,
            "south": SOUTH,
            "north": NORTH,
            "kx": round(kx, 6),
            "ky": PX_PER_DEGREE,
            "width": round((EAST - WEST) * kx, 1),
            "height": (NORTH - SOUTH) * PX_PER_DEGREE,
        },
        "countries": sorted(countries, key=lambda c: c["code"]),
    }
    target.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{target}: {len(countries)} countries, {target.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
