"""Route modules of the venue server, one per endpoint family.

Each module exposes ``register(router)``; add a module to :data:`ROUTE_MODULES` to serve it.
"""

from __future__ import annotations

from types import ModuleType

from tradeflow.simulator.routes import general, market_data, order_control, orders, stream_control, streams

ROUTE_MODULES: tuple[ModuleType, ...] = (general, market_data, streams, stream_control, orders, order_control)
