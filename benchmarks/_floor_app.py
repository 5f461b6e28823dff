"""The load benchmark's peer: the same framework and server answering the same paths with no work.

``uvicorn _floor_app:app`` (the app dir is ``benchmarks/``). It checks that a bearer token is
present and returns small fixed JSON: what FastAPI + uvicorn cost on this machine for the
same requests, the floor under gsomia's figures.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Header, HTTPException

app = FastAPI()
_ITEM = {"id": "x", "label": {"originator": "KOR"}, "payload": {"n": 1}}


def _authorised(authorization: str | None) -> None:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok", "party": "JPN"}


@app.get("/items")
def items(limit: int = 100, authorization: str | None = Header(None)) -> dict[str, Any]:
    _authorised(authorization)
    return {"items": [_ITEM] * min(limit, 20), "next_cursor": None, "withheld": 0}


@app.get("/items/{item_id}")
def item(item_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
    _authorised(authorization)
    return {**_ITEM, "id": item_id}
