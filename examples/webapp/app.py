"""Seeds 000/001's AuditRunner on bus: one audit engine per HTTP request, streamed over WebSockets.

    POST /audits {"url": "https://shop.example"}   -> {"id": "audit-3f2a1c9e", "events": "/audits/audit-3f2a1c9e"}
    WS   /audits/{id}                              -> that audit's events as JSON, from its first, then {"kind": "end", ...}
    GET  /audits/{id}[?wait=true]                  -> its state now (or once it is over)
    GET  /audits/{id}/shots/{gseq}                 -> a screenshot's bytes, as the engine sent them

    pip install '.[examples]' && uvicorn --app-dir examples/webapp app:app

The seeds' version needs a multiprocessing queue per audit, a pickled queue
handle in the environment, base64 screenshots and a reader thread per socket.
Here the supervisor is the queue: a client that connects late, or reconnects,
gets the whole audit from its history, and screenshots are URLs served from
it byte for byte. `{"url": ..., "legacy": true}` runs an engine that only
prints `##PROGRESS:` markers (examples/legacy_engine.py), unchanged.
"""

from __future__ import annotations

import os
import secrets
import sys
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

from bus import AsyncBus, AsyncHandle, Event
from bus.protocol.codec import jsonable

EXAMPLES = Path(__file__).resolve().parent.parent
ENGINE = {False: EXAMPLES / "audit_engine.py", True: EXAMPLES / "legacy_engine.py"}


class Audit(BaseModel):
    url: str
    pages: int = Field(8, ge=1, le=100)
    legacy: bool = False


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncBus.start(stop_timeout=5) as bus:  # a supervisor of the app's own, gone with it
        app.state.bus, app.state.audits = bus, {}
        yield


app = FastAPI(title="audits on bus", lifespan=lifespan)


@app.post("/audits")
async def start_audit(audit: Audit, request: Request) -> dict[str, str]:
    parts = urlsplit(audit.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HTTPException(422, f"url {audit.url!r} is not an http(s) URL with a host")
    audit_id = f"audit-{secrets.token_hex(4)}"
    command = [sys.executable, str(ENGINE[audit.legacy])]
    if not audit.legacy:
        command += ["--site", parts.hostname, "--pages", str(audit.pages)]
    handle = await request.app.state.bus.spawn(command, name=audit_id, env={"DEMO_PACE": os.environ.get("DEMO_PACE", "1")})
    request.app.state.audits[audit_id] = handle
    return {"id": audit_id, "events": f"/audits/{audit_id}"}


@app.websocket("/audits/{audit_id}")
async def follow_audit(ws: WebSocket, audit_id: str) -> None:
    handle: AsyncHandle | None = ws.app.state.audits.get(audit_id)
    await ws.accept()
    if handle is None:
        await ws.close(code=4404, reason=f"no audit {audit_id}")
        return
    try:
        async with aclosing(handle.events()) as events:  # from its first event, whenever we connect
            async for event in events:
                await ws.send_json(as_json(event, audit_id))
        ended = await handle.wait()
        await ws.send_json({"kind": "end", "state": ended.state, "code": ended.code, "signal": ended.signal, "result": ended.result})
        await ws.close()
    except WebSocketDisconnect:
        pass  # the browser left; its next connection starts from the beginning again


@app.get("/audits/{audit_id}")
async def audit_state(audit_id: str, request: Request, wait: bool = False) -> dict[str, Any]:
    """Its state now (phase, progress, state); with ?wait=true, once it is over."""
    handle: AsyncHandle | None = request.app.state.audits.get(audit_id)
    if handle is None:
        raise HTTPException(404, f"no audit {audit_id}")
    if wait:
        ended = await handle.wait()
        return {"id": audit_id, "state": ended.state, "code": ended.code, "result": ended.result}
    now = (await handle.snapshot())[audit_id]
    return {"id": audit_id, "state": now["state"], "phase": now["phase"], "progress": now["progress"], "result": now["result"]}


@app.get("/audits/{audit_id}/shots/{gseq}")
async def screenshot(audit_id: str, gseq: int, request: Request) -> Response:
    event = await request.app.state.bus.event(gseq)
    if event is None or event.kind != "screenshot" or event.engine != audit_id:
        raise HTTPException(404, f"no screenshot {gseq} of {audit_id} (or no longer in the history)")
    return Response(bytes(event.data), media_type=event.mime)  # type: ignore[attr-defined]


def as_json(event: Event, audit_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": event.kind, "engine": event.engine, "gseq": event.gseq, "seq": event.seq, "ts": event.ts}
    out.update({name: getattr(event, name) for name in event.HEADER_FIELDS})
    if event.kind == "screenshot":
        out["url"] = f"/audits/{audit_id}/shots/{event.gseq}"  # the bytes by URL, never base64 in the stream
    return jsonable(out)  # type: ignore[no-any-return]
