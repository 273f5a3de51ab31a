"""Per-venue server state shared by the middleware and the route modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from tradeflow.simulator.faults import FaultScheduler
from tradeflow.simulator.spec import VenueSpec
from tradeflow.simulator.venue import SimulatedVenue, now_ms
from tradeflow.simulator.weights import WeightBudget

if TYPE_CHECKING:
    from tradeflow.simulator.live import LiveVenue
    from tradeflow.simulator.routes.streams import StreamHub


@dataclass
class VenueRuntime:
    """Mutable per-venue server state shared by the middleware and route handlers.

    Attributes:
        venue: The pure data model of the venue.
        spec: The venue spec (faults, latency, weight limit).
        clock: Returns server time in ms; injectable for tests.
        started_ms: Server start time; outage windows are relative to it.
        budget: REQUEST_WEIGHT budget.
        scheduler: Transport-fault schedule.
        live: The live book layer once started (:func:`tradeflow.simulator.live.live_of`), else None.
        streams: The websocket stream hub once a client connected, else None.
        on_close: Coroutines run when the server shuts down (stop tickers, close websockets).
    """

    venue: SimulatedVenue
    spec: VenueSpec
    clock: Callable[[], int] = now_ms
    started_ms: int = 0
    budget: WeightBudget = field(init=False)
    scheduler: FaultScheduler = field(init=False)
    live: LiveVenue | None = field(default=None, init=False)
    streams: StreamHub | None = field(default=None, init=False)
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        """Derive the budget and fault schedule from the spec."""
        if not self.started_ms:
            self.started_ms = self.clock()
        self.budget = WeightBudget(self.spec.weight_limit_per_minute)
        self.scheduler = FaultScheduler(self.spec.transport, self.spec.seed)


RUNTIME_KEY: web.AppKey[VenueRuntime] = web.AppKey("venue_runtime", VenueRuntime)


def runtime_of(request: web.Request) -> VenueRuntime:
    """Return the venue runtime serving a request."""
    return request.app[RUNTIME_KEY]
