"""Tell ingests on the same data directory when the service is answering requests.

Each HTTP request touches the data directory's busy signal as it starts and as it
ends (``ingest.busy_signal``: a store into a shared 8-byte map, no system call);
an ingest that sees a recent touch runs fewer network calls and rests between
them, so catalog reads keep their latency during a long analysis.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.busy_signal import BusyBeacon


class ActivitySignal:
    """Pure ASGI middleware around the app: touch ``beacon`` at each request's start and end."""

    def __init__(self, app: ASGIApp, beacon: BusyBeacon) -> None:
        self.app = app
        self.beacon = beacon

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websockets and lifespan: long-lived, not load
            await self.app(scope, receive, send)
            return
        self.beacon.touch()
        try:
            await self.app(scope, receive, send)
        finally:
            self.beacon.touch()
