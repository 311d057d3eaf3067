"""Request body size limit, enforced before any handler or form parser reads the body.

A declared ``Content-Length`` above the limit is refused at once; a body sent without one (chunked) is counted
as it streams and refused as soon as it passes the limit. Either way the client gets 413 with the common JSON
error shape (:mod:`hybrid_search.api.errors`).
"""

from __future__ import annotations

import json
from typing import Any

from hybrid_search.api.errors import error_body

Scope = dict[str, Any]
Message = dict[str, Any]


class BodySizeLimit:
    """ASGI middleware: at most ``max_bytes`` of request body per HTTP request."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return (
            f"the request is larger than {self.max_bytes // 1024} KiB; send a smaller file or fewer products"
        )

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(error_body(413, "too_large", self._message())).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): read the body here, up to the limit, then hand it on
        chunks: list[bytes] = []
        seen = 0
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            after: Message = await receive()
            return after

        await self.app(scope, replay, send)


__all__ = ["BodySizeLimit"]
