"""Binance-style API errors: ``{"code": <negative int>, "msg": "..."}`` with an HTTP status."""

from __future__ import annotations

import json

from aiohttp import web


class BinanceError(Exception):
    """An error answered the way Binance answers it."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        """Describe the error.

        Args:
            status: HTTP status, e.g. 400.
            code: Binance error code, e.g. -1121.
            msg: Binance error message.
        """
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg

    def response(self) -> web.Response:
        """Render the error as an HTTP response."""
        return error_response(self.status, self.code, self.msg)


def error_response(status: int, code: int, msg: str) -> web.Response:
    """Return a JSON error response in Binance's format."""
    body = json.dumps({"code": code, "msg": msg}, separators=(",", ":"))
    return web.Response(status=status, text=body, content_type="application/json")


def unknown_error(
    msg: str = "An unknown error occurred while processing the request.",
) -> BinanceError:
    """Return -1000 UNKNOWN."""
    return BinanceError(400, -1000, msg)


def illegal_chars(param: str) -> BinanceError:
    """Return -1100 ILLEGAL_CHARS for a non-numeric integer parameter."""
    return BinanceError(
        400,
        -1100,
        f"Illegal characters found in parameter '{param}'; legal range is '^[0-9]{{1,20}}$'.",
    )


def mandatory_param(param: str) -> BinanceError:
    """Return -1102 MANDATORY_PARAM_EMPTY_OR_MALFORMED."""
    return BinanceError(
        400,
        -1102,
        f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed.",
    )


def bad_interval() -> BinanceError:
    """Return -1120 BAD_INTERVAL."""
    return BinanceError(400, -1120, "Invalid interval.")


def bad_symbol() -> BinanceError:
    """Return -1121 BAD_SYMBOL."""
    return BinanceError(400, -1121, "Invalid symbol.")


def invalid_parameter(param: str) -> BinanceError:
    """Return -1130 INVALID_PARAMETER."""
    return BinanceError(400, -1130, f"Data sent for parameter '{param}' is not valid.")


def too_much_weight(limit: int) -> BinanceError:
    """Return the 429 -1003 sent when the per-minute weight budget is exhausted."""
    return BinanceError(
        429,
        -1003,
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    )
