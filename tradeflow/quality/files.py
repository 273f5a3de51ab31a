"""Read a candle file downloaded by any tool into tradeflow's candle schema.

``tradeflow validate PATH`` points the validation suites at files that did not come from the
pipeline. This module reads one such file (Parquet or CSV) into a DataFrame with exactly the
columns of :data:`CANDLE_COLUMNS`, changing only the representation: column names, text to
numbers, datetimes to UTC milliseconds. It never patches data: rows keep their order, duplicates
and gaps stay, and a missing price stays NaN for the suite's not-null check to report. Whatever
cannot be read faithfully raises :class:`CandleFileError`, naming the file, the problem and what to
do about it.

Row numbers in messages count candles from 1: row 1 is the first candle, after any header line.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tradeflow.timeframes import SUPPORTED_TIMEFRAMES, timeframe_ms

#: The columns of a normalised candle frame, in the order of a ccxt OHLCV row.
CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")

# Other names tools give these columns (matched case-insensitively, like the names above).
_ALIASES: dict[str, tuple[str, ...]] = {"timestamp": ("date", "time", "open_time", "ts"), "volume": ("vol",)}
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv.gz": "csv", ".csv": "csv"}
_SUPPORTED = ", ".join(_SUFFIXES)

# Epoch timestamps of the years 1973-5138 in milliseconds lie in [1e11, 1e14); the same span in
# other units lands in these neighbouring ranges: (unit, low, high, seconds per unit, hint).
_MS_LOW, _MS_HIGH = 1e11, 1e14
_OTHER_UNITS = (
    ("seconds", 1e9, 1e11, 1.0, "multiply the timestamp column by 1000"),
    ("microseconds", 1e14, 1e17, 1e-6, "divide the timestamp column by 1000"),
    ("nanoseconds", 1e17, np.inf, 1e-9, "divide the timestamp column by 1000000"),
)
_MS_PER_DATETIME_UNIT = {"s": 0, "ms": 1, "us": 1_000, "ns": 1_000_000}  # 0: multiply by 1000

# A timeframe token at the end of the file name's stem: ADA-BTC_5m.parquet, btc-1h.csv.
_NAME_TIMEFRAME = re.compile(r"[_-](\d+[smhdwMy])$")

_COLUMN_HINT = (
    "name the columns timestamp, open, high, low, close, volume "
    "(timestamp may also be date, time, open_time or ts; volume may be vol)"
)
_TIMEFRAME_HINT = f"pass --timeframe (one of {', '.join(SUPPORTED_TIMEFRAMES)})"
_REEXPORT_HINT = "re-download the file or re-export it from its source"


class CandleFileError(ValueError):
    """A candle file that cannot be validated; the message names the file and the problem.

    Attributes:
        path: The file (or directory) as given.
        problem: What is wrong, in a phrase.
        hint: What the user can do about it; may be empty.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, hint: str = "") -> None:
        self.path = os.fspath(path)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{self.path}: {problem}" + (f"; {hint}" if hint else ""))


@dataclass(frozen=True)
class CandleFile:
    """A candle file read into tradeflow's schema.

    Attributes:
        path: The file as given.
        format: ``"parquet"`` or ``"csv"``.
        timeframe: The candle timeframe, e.g. ``"5m"``.
        timeframe_source: Where the timeframe came from: ``"argument"``, ``"file name"`` or
            ``"timestamps"``.
        candles: Columns exactly :data:`CANDLE_COLUMNS`; ``timestamp`` int64 UTC milliseconds,
            the others float64 (NaN where the file has no value); rows in file order.
    """

    path: str
    format: str
    timeframe: str
    timeframe_source: str
    candles: pd.DataFrame


def read_candle_file(path: str | os.PathLike[str], *, timeframe: str | None = None) -> CandleFile:
    """Read a Parquet or CSV candle file into tradeflow's candle schema.

    Args:
        path: A ``.parquet``, ``.pq``, ``.csv`` or ``.csv.gz`` file.
        timeframe: The candle timeframe; if None it is taken from the file name (``_5m``) or
            else inferred from the most common step between timestamps.

    Returns:
        The candles, normalised but otherwise as in the file.

    Raises:
        CandleFileError: if the file is missing, unreadable, empty, lacks a column, holds a
            value that is not a number or a time, has timestamps in a unit other than
            milliseconds, or its timeframe cannot be told.
    """
    name = os.fspath(path)
    if timeframe is not None and timeframe not in SUPPORTED_TIMEFRAMES:
        raise CandleFileError(name, f"unsupported timeframe {timeframe!r}", _TIMEFRAME_HINT)
    file_format, stem = _format_and_stem(name)
    file = Path(name)
    if file.is_dir():
        raise CandleFileError(name, "is a directory, not a candle file", "point at one of its files")
    if not file.is_file():
        raise CandleFileError(name, "no such file")
    if file.stat().st_size == 0:
        raise CandleFileError(name, "no candles in the file (it is empty: zero bytes)", _REEXPORT_HINT)

    raw, source_names = _read_parquet(name) if file_format == "parquet" else _read_csv(name)
    if len(raw) == 0:
        raise CandleFileError(name, "no candles in the file (it has no rows)", _REEXPORT_HINT)
    raw = raw.reset_index(drop=True)
    candles = pd.DataFrame(
        {
            "timestamp": _timestamps_ms(name, source_names["timestamp"], raw["timestamp"]),
            **{column: _numbers(name, source_names[column], raw[column]) for column in CANDLE_COLUMNS[1:]},
        }
    )

    if timeframe is not None:
        return CandleFile(name, file_format, timeframe, "argument", candles)
    from_name = _timeframe_from_name(name, stem)
    if from_name is not None:
        return CandleFile(name, file_format, from_name, "file name", candles)
    inferred = _timeframe_from_timestamps(name, candles["timestamp"].to_numpy())
    return CandleFile(name, file_format, inferred, "timestamps", candles)


def candle_files(path: str | os.PathLike[str]) -> list[Path]:
    """List the candle files at a path: the file itself, or those under a directory.

    Args:
        path: A file, or a directory searched recursively for ``*.parquet``, ``*.pq``, ``*.csv``
            and ``*.csv.gz``.

    Returns:
        ``[path]`` for a file; for a directory its candle files sorted by their path below it.

    Raises:
        CandleFileError: if the path does not exist or the directory holds no candle file.
    """
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CandleFileError(path, "no such file or directory")
    found = [
        p
        for p in root.rglob("*")
        if p.is_file() and any(p.name.lower().endswith(suffix) for suffix in _SUFFIXES)
    ]
    if not found:
        raise CandleFileError(
            path,
            f"no candle files ({_SUPPORTED}) in the directory",
            "point at a candle file, or at a directory that holds some",
        )
    return sorted(found, key=lambda p: p.relative_to(root).parts)


# --- reading -------------------------------------------------------------------------------------


def _format_and_stem(name: str) -> tuple[str, str]:
    """Return the file's format by its suffix, and its name without that suffix."""
    base = Path(name).name
    for suffix, file_format in _SUFFIXES.items():
        if base.lower().endswith(suffix):
            return file_format, base[: -len(suffix)]
    raise CandleFileError(
        name, f"unsupported file type; supported are {_SUPPORTED}", "export the candles to one of those"
    )


def _short(exc: BaseException) -> str:
    """Return the first line of an exception's message, clipped, for a parenthesis."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def _read_parquet(name: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read the candle columns of a Parquet file, named as in :data:`CANDLE_COLUMNS`."""
    try:
        names = [str(n) for n in pq.ParquetFile(name).schema_arrow.names]
    except (pa.ArrowException, OSError) as exc:
        raise CandleFileError(name, f"not a readable Parquet file ({_short(exc)})", _REEXPORT_HINT) from exc
    source_names = _match_columns(name, names)
    try:
        table = pq.read_table(name, columns=[source_names[c] for c in CANDLE_COLUMNS])
        # Ignore pandas' metadata: it would turn a column stored from an index back into the index.
        frame: pd.DataFrame = table.to_pandas(ignore_metadata=True)
    except (pa.ArrowException, OSError) as exc:
        raise CandleFileError(name, f"not a readable Parquet file ({_short(exc)})", _REEXPORT_HINT) from exc
    frame.columns = pd.Index(CANDLE_COLUMNS)
    return frame, source_names


def _read_csv(name: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read the candle columns of a CSV file, with or without a header row, as text."""
    try:
        cells = pd.read_csv(
            name,
            header=None,
            dtype=str,
            encoding="utf-8-sig",
            compression="gzip" if name.lower().endswith(".gz") else None,
        )
    except pd.errors.EmptyDataError as exc:
        raise CandleFileError(name, "no candles in the file (it has no rows)", _REEXPORT_HINT) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise CandleFileError(name, f"not a readable CSV file ({_short(exc)})", _REEXPORT_HINT) from exc
    if len(cells) == 0:
        raise CandleFileError(name, "no candles in the file (it has no rows)", _REEXPORT_HINT)

    first = [None if pd.isna(cell) else str(cell) for cell in cells.iloc[0]]
    present = [cell for cell in first if cell is not None]
    if present and pd.to_numeric(pd.Series(present), errors="coerce").notna().all():
        # No header: only the six ccxt OHLCV columns, in their order, can be read unambiguously.
        if cells.shape[1] != len(CANDLE_COLUMNS):
            raise CandleFileError(
                name,
                f"the file has no header row and {cells.shape[1]} columns; without a header tradeflow "
                f"reads exactly the {len(CANDLE_COLUMNS)} ccxt OHLCV columns ({', '.join(CANDLE_COLUMNS)})",
                "add a header row naming the columns",
            )
        cells.columns = pd.Index(CANDLE_COLUMNS)
        return cells, {column: column for column in CANDLE_COLUMNS}

    header = ["" if cell is None else cell for cell in first]
    source_names = _match_columns(name, header, csv=True)
    frame = cells.iloc[1:, [header.index(source_names[c]) for c in CANDLE_COLUMNS]]
    frame.columns = pd.Index(CANDLE_COLUMNS)
    return frame, source_names


def _match_columns(name: str, present: list[str], *, csv: bool = False) -> dict[str, str]:
    """Map each of :data:`CANDLE_COLUMNS` to the file's column holding it.

    The canonical name is matched first, then its aliases, case-insensitively after stripping.
    The file's column names must be unique among the columns chosen.
    """
    keys = [column.strip().lower() for column in present]
    chosen: dict[str, str] = {}
    missing: list[str] = []
    for column in CANDLE_COLUMNS:
        for candidates in ((column,), _ALIASES.get(column, ())):
            hits = [present[i] for i, key in enumerate(keys) if key in candidates]
            if len(hits) > 1:
                raise CandleFileError(
                    name,
                    f"more than one column could be {column}: {', '.join(map(repr, hits))}",
                    "keep one of them, or rename the others",
                )
            if hits:
                chosen[column] = hits[0]
                break
        else:
            missing.append(column)
    if missing:
        shown = ", ".join(map(repr, present[:20])) + (
            f", ... ({len(present) - 20} more)" if len(present) > 20 else ""
        )
        hint = _COLUMN_HINT
        if csv and len(present) == 1 and any(sep in present[0] for sep in ";\t|"):
            hint = "the file seems not to be comma-separated; tradeflow reads comma-separated CSV"
        raise CandleFileError(
            name,
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; the file has {shown}",
            hint,
        )
    return chosen


# --- values --------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """Return a value as a message shows it: integral floats without ``.0``, text quoted."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, datetime):  # pandas Timestamps too
        return value.isoformat()
    return repr(value)


def _bad_values(
    name: str, column: str, values: pd.Series[Any], bad: pd.Series[bool], what: str, hint: str = ""
) -> CandleFileError:
    """Return the error for the rows of ``values`` flagged in ``bad``, naming the first.

    ``what`` completes "<value> is ...", e.g. "not a number".
    """
    rows = np.flatnonzero(bad.to_numpy())
    first = int(rows[0])
    more = f" (and {len(rows) - 1} more row{'s' if len(rows) > 2 else ''})" if len(rows) > 1 else ""
    return CandleFileError(
        name,
        f"column {column!r} row {first + 1}: {_show(values.iloc[first])} is {what}{more}",
        hint or _REEXPORT_HINT,
    )


def _numbers(name: str, column: str, values: pd.Series[Any]) -> pd.Series[float]:
    """Return a price or volume column as float64; nulls stay NaN, anything else must be a number."""
    if pd.api.types.is_bool_dtype(values.dtype):
        raise CandleFileError(name, f"column {column!r} holds true/false values, not numbers", _REEXPORT_HINT)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        raise _bad_values(name, column, values, bad, "not a number")
    return numbers.astype("float64")


def _timestamps_ms(name: str, column: str, values: pd.Series[Any]) -> npt.NDArray[np.int64]:
    """Return the timestamp column as int64 UTC milliseconds, or raise naming the first bad row."""
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        raise CandleFileError(
            name,
            f"row {int(missing[0]) + 1} has no timestamp: a candle cannot be placed in time"
            + (f" ({missing.size} rows have none)" if missing.size > 1 else ""),
            "fix the file at its source",
        )
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _datetimes_ms(name, column, values, values)
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_timedelta64_dtype(values.dtype):
        raise CandleFileError(
            name, f"column {column!r} holds {values.dtype} values, not times", _REEXPORT_HINT
        )
    if pd.api.types.is_numeric_dtype(values.dtype):
        return _numeric_ms(name, column, values)

    # Text (every CSV) or Python objects: numbers if the first row is one, else ISO-8601 datetimes.
    numbers = pd.to_numeric(values, errors="coerce")
    if pd.notna(numbers.iloc[0]):
        bad = numbers.isna()
        if bad.any():
            raise _bad_values(name, column, values, bad, "not a number, unlike the first timestamp")
        return _numeric_ms(name, column, numbers)
    moments = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    bad = moments.isna()
    if bad.any():
        raise _bad_values(
            name,
            column,
            values,
            bad,
            "neither a number nor an ISO-8601 datetime",
            "write timestamps as milliseconds since the Unix epoch or as ISO-8601 datetimes",
        )
    return _datetimes_ms(name, column, moments, values)


def _iso(value: float, seconds_per_unit: float) -> str:
    """Return an epoch count in some unit as an ISO-8601 UTC time, or a note if out of range."""
    try:
        return datetime.fromtimestamp(value * seconds_per_unit, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def _check_ms_range(
    name: str, column: str, values: pd.Series[Any], magnitudes: npt.NDArray[np.float64], *, guess_unit: bool
) -> None:
    """Raise unless every timestamp is a millisecond time in 1973-5138, naming a likely other unit."""
    in_ms = (magnitudes >= _MS_LOW) & (magnitudes < _MS_HIGH)
    if in_ms.all():
        return
    if guess_unit:
        for unit, low, high, seconds_per_unit, hint in _OTHER_UNITS:
            if ((magnitudes >= low) & (magnitudes < high)).all():
                first = magnitudes[0]
                raise CandleFileError(
                    name,
                    f"timestamps look like {unit} since the Unix epoch "
                    f"(first: {_show(values.iloc[0])} = {_iso(first, seconds_per_unit)}); "
                    "tradeflow expects milliseconds",
                    hint,
                )
    row = int(np.flatnonzero(~in_ms)[0])
    shown = _show(values.iloc[row])
    if not guess_unit:  # datetimes: the unit is known, the time is implausible
        raise CandleFileError(
            name,
            f"column {column!r} row {row + 1}: {shown} is outside the years 1973 to 5138",
            "check the timestamp column",
        )
    raise CandleFileError(
        name,
        f"column {column!r} row {row + 1}: {shown} is not a millisecond timestamp between 1973 and 5138 "
        f"(as milliseconds it is {_iso(magnitudes[row], 1e-3)})",
        "check the timestamp column: every value must be UTC milliseconds since the Unix epoch",
    )


def _numeric_ms(name: str, column: str, values: pd.Series[Any]) -> npt.NDArray[np.int64]:
    """Return numeric timestamps as int64 milliseconds: integral, and in the millisecond range."""
    magnitudes = values.to_numpy(dtype=np.float64)
    _check_ms_range(name, column, values, magnitudes, guess_unit=True)
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    fractional = magnitudes != np.floor(magnitudes)
    if fractional.any():
        raise _bad_values(
            name,
            column,
            values,
            pd.Series(fractional),
            "not a whole number of milliseconds",
            _REEXPORT_HINT,
        )
    return magnitudes.astype(np.int64)


def _datetimes_ms(
    name: str, column: str, moments: pd.Series[Any], values: pd.Series[Any]
) -> npt.NDArray[np.int64]:
    """Return datetimes as int64 UTC milliseconds; naive ones are taken as UTC.

    ``values`` are the file's values the datetimes were read from, for messages.
    """
    if moments.dt.tz is not None:
        moments = moments.dt.tz_convert("UTC").dt.tz_localize(None)
    unit = str(moments.dt.unit)
    counts = moments.to_numpy(dtype=f"datetime64[{unit}]").view(np.int64)
    per_ms = _MS_PER_DATETIME_UNIT[unit]
    if per_ms == 0:
        ms = counts * 1000
    else:
        fractional = counts % per_ms != 0
        if fractional.any():
            raise _bad_values(
                name,
                column,
                values,
                pd.Series(fractional),
                "a time with a fraction of a millisecond",
                _REEXPORT_HINT,
            )
        ms = counts // per_ms
    _check_ms_range(name, column, values, ms.astype(np.float64), guess_unit=False)
    return ms.astype(np.int64)


# --- timeframe -----------------------------------------------------------------------------------


def _timeframe_from_name(name: str, stem: str) -> str | None:
    """Return the timeframe a file name ends with (``ADA-BTC_5m``), or None if it names none."""
    match = _NAME_TIMEFRAME.search(stem)
    if match is None:
        return None
    timeframe = match.group(1)
    if timeframe not in SUPPORTED_TIMEFRAMES:
        raise CandleFileError(
            name,
            f"the file name gives the timeframe {timeframe!r}, which tradeflow does not support",
            _TIMEFRAME_HINT,
        )
    return timeframe


def _timeframe_from_timestamps(name: str, timestamps: npt.NDArray[np.int64]) -> str:
    """Return the supported timeframe equal to the most common step between consecutive timestamps."""
    steps = np.diff(timestamps)
    steps = steps[steps > 0]
    if steps.size == 0:
        why = (
            "the file has a single candle"
            if timestamps.size == 1
            else "no timestamp is later than the one before"
        )
        raise CandleFileError(
            name,
            f"cannot tell the timeframe: {why}, and the file name has none (such as _5m)",
            _TIMEFRAME_HINT,
        )
    distinct, counts = np.unique(steps, return_counts=True)
    step = int(distinct[np.argmax(counts)])
    by_length = {timeframe_ms(timeframe): timeframe for timeframe in SUPPORTED_TIMEFRAMES}
    if step not in by_length:
        raise CandleFileError(
            name,
            f"cannot tell the timeframe: the most common step between timestamps, {step} ms, "
            "is not a supported timeframe, and the file name has none (such as _5m)",
            _TIMEFRAME_HINT,
        )
    return by_length[step]
