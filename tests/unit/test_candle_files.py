"""Reading candle files from any tool: normalised candles, or an error naming the file and problem."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradeflow.quality.files import (
    CANDLE_COLUMNS,
    CandleFile,
    CandleFileError,
    candle_files,
    read_candle_file,
)

T0 = 1_515_542_400_000  # 2018-01-10T00:00:00Z in milliseconds
FIVE_MIN = 300_000


def _frame(rows: int = 4, step: int = FIVE_MIN, start: int = T0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": np.arange(rows, dtype=np.int64) * step + start,
            "open": np.linspace(1.0, 2.0, rows),
            "high": np.linspace(1.5, 2.5, rows),
            "low": np.linspace(0.5, 1.5, rows),
            "close": np.linspace(1.2, 2.2, rows),
            "volume": np.linspace(10.0, 20.0, rows),
        }
    )


def _parquet(path: Path, frame: pd.DataFrame) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _error(path: Path, *, timeframe: str | None = None) -> CandleFileError:
    with pytest.raises(CandleFileError) as caught:
        read_candle_file(path, timeframe=timeframe)
    error = caught.value
    assert str(path) in str(error)
    assert error.path == str(path)
    return error


HEADER = "timestamp,open,high,low,close,volume\n"


def _csv_rows(rows: int = 3, step: int = FIVE_MIN) -> str:
    return "".join(f"{T0 + i * step},1.0,2.0,0.5,1.5,{10 + i}\n" for i in range(rows))


# --- good files ----------------------------------------------------------------------------------


def test_real_binance_parquet_reads_unchanged(real_data: Path) -> None:
    path = real_data / "binance" / "ADA-BTC_5m.parquet"
    candle_file = read_candle_file(path)
    expected = pq.read_table(path).to_pandas()
    assert candle_file.format == "parquet"
    assert (candle_file.timeframe, candle_file.timeframe_source) == ("5m", "file name")
    assert tuple(candle_file.candles.columns) == CANDLE_COLUMNS
    assert candle_file.candles["timestamp"].dtype == np.int64
    assert all(candle_file.candles[c].dtype == np.float64 for c in CANDLE_COLUMNS[1:])
    pd.testing.assert_frame_equal(candle_file.candles, expected[list(CANDLE_COLUMNS)])


def test_parquet_normalises_dtypes_and_keeps_row_order(tmp_path: Path) -> None:
    frame = _frame(5)
    frame = frame.iloc[[0, 2, 1, 1, 4]].reset_index(drop=True)  # unsorted, with a duplicate
    frame["volume"] = frame["volume"].astype(np.int32)
    frame["extra"] = "ignored"
    candle_file = read_candle_file(_parquet(tmp_path / "x_5m.parquet", frame[["extra", *CANDLE_COLUMNS]]))
    assert tuple(candle_file.candles.columns) == CANDLE_COLUMNS
    assert candle_file.candles["timestamp"].tolist() == frame["timestamp"].tolist()
    assert candle_file.candles["volume"].dtype == np.float64
    assert candle_file.candles["volume"].tolist() == frame["volume"].astype(float).tolist()


def test_pq_suffix_is_parquet(tmp_path: Path) -> None:
    assert read_candle_file(_parquet(tmp_path / "x_5m.pq", _frame())).format == "parquet"


def test_csv_with_header(tmp_path: Path) -> None:
    candle_file = read_candle_file(_text(tmp_path / "x.csv", HEADER + _csv_rows(3)))
    assert isinstance(candle_file, CandleFile)
    assert candle_file.format == "csv"
    assert candle_file.candles["timestamp"].tolist() == [T0, T0 + FIVE_MIN, T0 + 2 * FIVE_MIN]
    assert candle_file.candles["timestamp"].dtype == np.int64
    assert candle_file.candles["volume"].tolist() == [10.0, 11.0, 12.0]
    assert all(candle_file.candles[c].dtype == np.float64 for c in CANDLE_COLUMNS[1:])


def test_csv_header_matched_case_insensitively_after_stripping(tmp_path: Path) -> None:
    header = " Timestamp ,OPEN,High, low,Close,Volume,Trades\n"
    rows = f"{T0},1,2,0.5,1.5,10,7\n{T0 + FIVE_MIN},1,2,0.5,1.5,11,8\n"
    candle_file = read_candle_file(_text(tmp_path / "x.csv", header + rows))
    assert tuple(candle_file.candles.columns) == CANDLE_COLUMNS
    assert candle_file.candles["volume"].tolist() == [10.0, 11.0]


def test_csv_columns_in_any_order(tmp_path: Path) -> None:
    text = f"close,volume,timestamp,open,high,low\n1.5,10,{T0},1,2,0.5\n1.6,11,{T0 + FIVE_MIN},1,2,0.5\n"
    candles = read_candle_file(_text(tmp_path / "x.csv", text)).candles
    assert candles.iloc[0].tolist() == [T0, 1.0, 2.0, 0.5, 1.5, 10.0]


def test_headerless_csv_is_ccxt_ohlcv_order(tmp_path: Path) -> None:
    candle_file = read_candle_file(_text(tmp_path / "x.csv", _csv_rows(3)))
    assert len(candle_file.candles) == 3  # the first row is a candle, not a header
    assert candle_file.candles.iloc[0].tolist() == [T0, 1.0, 2.0, 0.5, 1.5, 10.0]


def test_gzipped_csv(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress((HEADER + _csv_rows(3)).encode()))
    candle_file = read_candle_file(path)
    assert candle_file.format == "csv"
    assert len(candle_file.candles) == 3


@pytest.mark.parametrize(
    ("time_name", "volume_name"), [("date", "vol"), ("Time", "volume"), ("open_time", "Vol"), ("ts", "vol")]
)
def test_column_aliases(tmp_path: Path, time_name: str, volume_name: str) -> None:
    text = f"{time_name},open,high,low,close,{volume_name},close_time\n{T0},1,2,0.5,1.5,10,{T0 + 299_999}\n"
    candles = read_candle_file(_text(tmp_path / "x_5m.csv", text)).candles
    assert candles.iloc[0].tolist() == [T0, 1.0, 2.0, 0.5, 1.5, 10.0]


def test_canonical_name_wins_over_alias(tmp_path: Path) -> None:
    text = f"date,timestamp,open,high,low,close,volume\n2001-01-01,{T0},1,2,0.5,1.5,10\n"
    assert read_candle_file(_text(tmp_path / "x_5m.csv", text)).candles["timestamp"].tolist() == [T0]


def test_ambiguous_columns(tmp_path: Path) -> None:
    text = f"date,time,open,high,low,close,volume\n{T0},{T0},1,2,0.5,1.5,10\n"
    error = _error(_text(tmp_path / "x_5m.csv", text))
    assert "more than one column could be timestamp" in error.problem
    assert "'date', 'time'" in error.problem


def test_iso_datetime_strings_become_utc_ms(tmp_path: Path) -> None:
    text = (
        "date,open,high,low,close,volume\n"
        "2018-01-10 00:00:00,1,2,0.5,1.5,10\n"  # naive: taken as UTC
        "2018-01-10T00:05:00Z,1,2,0.5,1.5,10\n"
        "2018-01-10T01:10:00+01:00,1,2,0.5,1.5,10\n"
    )
    candle_file = read_candle_file(_text(tmp_path / "x.csv", text))
    assert candle_file.candles["timestamp"].tolist() == [T0, T0 + FIVE_MIN, T0 + 2 * FIVE_MIN]
    assert candle_file.candles["timestamp"].dtype == np.int64
    assert (candle_file.timeframe, candle_file.timeframe_source) == ("5m", "timestamps")


@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Berlin"])
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_parquet_timestamp_types_become_utc_ms(tmp_path: Path, tz: str | None, unit: str) -> None:
    frame = _frame(3)
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    # Arrow stores the UTC instant whatever the zone; the zone only changes how it is shown.
    moments = table.column(0).cast(pa.timestamp("ms", tz=tz)).cast(pa.timestamp(unit, tz=tz))
    pq.write_table(table.set_column(0, "timestamp", moments), tmp_path / "x.parquet")
    stored = pa.timestamp("ms" if unit == "s" else unit, tz=tz)  # Parquet has no seconds
    assert pq.read_schema(tmp_path / "x.parquet").field("timestamp").type == stored
    candles = read_candle_file(tmp_path / "x.parquet").candles
    assert candles["timestamp"].tolist() == _frame(3)["timestamp"].tolist()
    assert candles["timestamp"].dtype == np.int64


def test_integral_float_ms_accepted(tmp_path: Path) -> None:
    frame = _frame(3)
    frame["timestamp"] = frame["timestamp"].astype(float)
    candles = read_candle_file(_parquet(tmp_path / "x.parquet", frame)).candles
    assert candles["timestamp"].tolist() == _frame(3)["timestamp"].tolist()
    assert candles["timestamp"].dtype == np.int64


def test_null_prices_kept_as_nan(tmp_path: Path) -> None:
    text = HEADER + f"{T0},1,,0.5,1.5,10\n{T0 + FIVE_MIN},NaN,2,0.5,1.5,\n"
    candles = read_candle_file(_text(tmp_path / "x.csv", text)).candles
    assert math.isnan(candles.loc[0, "high"])
    assert math.isnan(candles.loc[1, "open"]) and math.isnan(candles.loc[1, "volume"])
    assert candles.loc[0, "open"] == 1.0
    assert len(candles) == 2


def test_null_prices_kept_in_parquet(tmp_path: Path) -> None:
    frame = _frame(3)
    frame.loc[1, "close"] = None
    candles = read_candle_file(_parquet(tmp_path / "x.parquet", frame)).candles
    assert candles["close"].isna().tolist() == [False, True, False]


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.json", "x.txt", "x.gz", "x"])
def test_unsupported_suffix(tmp_path: Path, name: str) -> None:
    error = _error(_text(tmp_path / name, HEADER + _csv_rows()))
    assert "unsupported file type" in error.problem
    assert ".parquet" in error.problem and ".csv.gz" in error.problem


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in _error(tmp_path / "absent.csv").problem


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    assert "is a directory" in _error(tmp_path / "d.csv").problem


def test_truncated_parquet(tmp_path: Path) -> None:
    good = _parquet(tmp_path / "good.parquet", _frame(1000)).read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(good[: len(good) // 2])
    error = _error(path)
    assert error.problem.startswith("not a readable Parquet file (")
    assert "re-download" in error.hint


def test_random_bytes_parquet(tmp_path: Path) -> None:
    path = tmp_path / "noise.parquet"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    assert "not a readable Parquet file" in _error(path).problem


def test_csv_in_a_parquet_file(tmp_path: Path) -> None:
    assert (
        "not a readable Parquet file" in _error(_text(tmp_path / "x.parquet", HEADER + _csv_rows())).problem
    )


def test_ragged_csv(tmp_path: Path) -> None:
    text = HEADER + f"{T0},1,2,0.5,1.5,10\n{T0},1,2,0.5,1.5,10,9,9\n"
    error = _error(_text(tmp_path / "x.csv", text))
    assert "not a readable CSV file" in error.problem
    assert "re-download" in error.hint


def test_binary_csv(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xff\xfe\x00\x81" * 100)
    assert "not a readable CSV file" in _error(path).problem


def test_corrupt_gzip_csv(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress((HEADER + _csv_rows(200)).encode())[:100])
    assert "not a readable CSV file" in _error(path).problem


def test_missing_columns_listed_with_present_ones(tmp_path: Path) -> None:
    text = f"timestamp,open,high,low\n{T0},1,2,0.5\n"
    error = _error(_text(tmp_path / "x.csv", text))
    assert "missing columns close, volume" in error.problem
    assert "'timestamp', 'open', 'high', 'low'" in error.problem


def test_missing_column_in_parquet(tmp_path: Path) -> None:
    error = _error(_parquet(tmp_path / "x.parquet", _frame().drop(columns="volume")))
    assert "missing column volume" in error.problem


def test_semicolon_csv_gets_a_separator_hint(tmp_path: Path) -> None:
    text = f"timestamp;open;high;low;close;volume\n{T0};1;2;0.5;1.5;10\n"
    error = _error(_text(tmp_path / "x.csv", text))
    assert "missing columns" in error.problem
    assert "comma-separated" in error.hint


def test_headerless_csv_needs_six_columns(tmp_path: Path) -> None:
    error = _error(_text(tmp_path / "x.csv", f"{T0},1,2,0.5,1.5\n"))
    assert "no header row and 5 columns" in error.problem


def test_non_numeric_price(tmp_path: Path) -> None:
    text = (
        HEADER
        + f"{T0},1,2,0.5,1.5,10\n{T0 + FIVE_MIN},1,two,0.5,1.5,10\n{T0 + 2 * FIVE_MIN},1,x,0.5,1.5,10\n"
    )
    error = _error(_text(tmp_path / "x.csv", text))
    assert "column 'high' row 2: 'two' is not a number (and 1 more row)" in error.problem


def test_non_numeric_price_names_the_files_column(tmp_path: Path) -> None:
    text = f"timestamp,open,high,low,close,Vol\n{T0},1,2,0.5,1.5,lots\n"
    assert "column 'Vol' row 1: 'lots' is not a number" in _error(_text(tmp_path / "x_5m.csv", text)).problem


def test_boolean_price_column(tmp_path: Path) -> None:
    frame = _frame()
    frame["open"] = True
    assert "true/false" in _error(_parquet(tmp_path / "x.parquet", frame)).problem


def test_fractional_timestamp(tmp_path: Path) -> None:
    text = HEADER + f"{T0},1,2,0.5,1.5,10\n{T0 + 0.5},1,2,0.5,1.5,10\n"
    error = _error(_text(tmp_path / "x.csv", text))
    assert "column 'timestamp' row 2" in error.problem
    assert "not a whole number of milliseconds" in error.problem


def test_unparsable_timestamp_string(tmp_path: Path) -> None:
    text = "date,open,high,low,close,volume\n2018-01-10 00:00,1,2,0.5,1.5,10\nyesterday,1,2,0.5,1.5,10\n"
    error = _error(_text(tmp_path / "x.csv", text))
    assert "column 'date' row 2: 'yesterday' is neither a number nor an ISO-8601 datetime" in error.problem


def test_text_among_numeric_timestamps(tmp_path: Path) -> None:
    text = HEADER + f"{T0},1,2,0.5,1.5,10\nsoon,1,2,0.5,1.5,10\n"
    assert "row 2: 'soon' is not a number" in _error(_text(tmp_path / "x.csv", text)).problem


def test_sub_millisecond_datetime(tmp_path: Path) -> None:
    text = "date,open,high,low,close,volume\n2018-01-10T00:00:00.0001Z,1,2,0.5,1.5,10\n"
    assert "fraction of a millisecond" in _error(_text(tmp_path / "x_5m.csv", text)).problem


def test_null_timestamp(tmp_path: Path) -> None:
    text = HEADER + f"{T0},1,2,0.5,1.5,10\n,1,2,0.5,1.5,10\n"
    error = _error(_text(tmp_path / "x.csv", text))
    assert "row 2 has no timestamp: a candle cannot be placed in time" in error.problem


def test_null_timestamp_in_parquet(tmp_path: Path) -> None:
    frame = _frame(3).astype({"timestamp": "Int64"})
    frame.loc[2, "timestamp"] = pd.NA
    assert "row 3 has no timestamp" in _error(_parquet(tmp_path / "x.parquet", frame)).problem


@pytest.mark.parametrize(
    ("text", "what"),
    [("", "zero bytes"), (HEADER, "no rows"), ("\n\n", "no rows")],
    ids=["zero-bytes", "header-only", "blank-lines"],
)
def test_empty_csv(tmp_path: Path, text: str, what: str) -> None:
    error = _error(_text(tmp_path / "x_5m.csv", text))
    assert "no candles in the file" in error.problem and what in error.problem


def test_empty_parquet(tmp_path: Path) -> None:
    assert "no candles in the file" in _error(_parquet(tmp_path / "x_5m.parquet", _frame(0))).problem


def test_zero_byte_parquet(tmp_path: Path) -> None:
    assert "no candles in the file" in _error(_text(tmp_path / "x.parquet", "")).problem


# --- timestamp units -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("divisor", "unit", "hint"),
    [
        (1000, "seconds", "multiply the timestamp column by 1000"),
        (1 / 1000, "microseconds", "divide the timestamp column by 1000"),
        (1 / 1_000_000, "nanoseconds", "divide the timestamp column by 1000000"),
    ],
)
def test_timestamps_in_other_units(tmp_path: Path, divisor: float, unit: str, hint: str) -> None:
    frame = _frame(3)
    frame["timestamp"] = (frame["timestamp"] / divisor).astype(np.int64)
    error = _error(_parquet(tmp_path / "x_5m.parquet", frame))
    first = int(frame["timestamp"].iloc[0])
    assert error.problem == (
        f"timestamps look like {unit} since the Unix epoch (first: {first} = 2018-01-10T00:00:00Z); "
        "tradeflow expects milliseconds"
    )
    assert error.hint == hint
    assert str(error) == f"{tmp_path / 'x_5m.parquet'}: {error.problem}; {hint}"


def test_seconds_in_csv(tmp_path: Path) -> None:
    text = "1515542400,1,2,0.5,1.5,10\n1515542700,1,2,0.5,1.5,10\n"
    error = _error(_text(tmp_path / "x.csv", text))
    assert (
        "look like seconds" in error.problem and "(first: 1515542400 = 2018-01-10T00:00:00Z)" in error.problem
    )


def test_fractional_seconds_are_reported_as_seconds(tmp_path: Path) -> None:
    text = "1515542400.5,1,2,0.5,1.5,10\n1515542700.25,1,2,0.5,1.5,10\n"
    assert "look like seconds" in _error(_text(tmp_path / "x.csv", text)).problem


@pytest.mark.parametrize("bad", [0, -5, T0 * 1000, 1_515_542_400])
def test_mixed_or_out_of_range_timestamps(tmp_path: Path, bad: int) -> None:
    frame = _frame(3)
    frame.loc[1, "timestamp"] = bad
    error = _error(_parquet(tmp_path / "x_5m.parquet", frame))
    assert (
        f"column 'timestamp' row 2: {bad} is not a millisecond timestamp between 1973 and 5138"
        in error.problem
    )


# --- timeframe -----------------------------------------------------------------------------------


def test_timeframe_argument_wins_over_name(tmp_path: Path) -> None:
    candle_file = read_candle_file(_parquet(tmp_path / "x_5m.parquet", _frame()), timeframe="1h")
    assert (candle_file.timeframe, candle_file.timeframe_source) == ("1h", "argument")


def test_unsupported_timeframe_argument(tmp_path: Path) -> None:
    error = _error(_parquet(tmp_path / "x.parquet", _frame()), timeframe="7m")
    assert "unsupported timeframe '7m'" in error.problem
    assert "--timeframe" in error.hint and "1h" in error.hint


@pytest.mark.parametrize(
    ("name", "timeframe"),
    [
        ("ADA-BTC_5m.parquet", "5m"),
        ("btc-1h.parquet", "1h"),
        ("eth_usdt_1d.csv.gz", "1d"),
        ("A_15m.CSV", "15m"),
    ],
)
def test_timeframe_from_file_name(tmp_path: Path, name: str, timeframe: str) -> None:
    path = tmp_path / name
    if name.endswith(".parquet"):
        _parquet(path, _frame())
    elif name.endswith(".gz"):
        path.write_bytes(gzip.compress((HEADER + _csv_rows()).encode()))
    else:
        _text(path, HEADER + _csv_rows())
    candle_file = read_candle_file(path)
    assert (candle_file.timeframe, candle_file.timeframe_source) == (timeframe, "file name")


def test_unsupported_timeframe_in_file_name(tmp_path: Path) -> None:
    error = _error(_parquet(tmp_path / "x_1w.parquet", _frame()))
    assert "the file name gives the timeframe '1w'" in error.problem


def test_timeframe_from_most_common_step(tmp_path: Path) -> None:
    frame = _frame(10, step=3_600_000)
    frame = frame.drop(index=[3, 4])  # a gap of three hours does not outvote the one-hour steps
    candle_file = read_candle_file(_parquet(tmp_path / "candles.parquet", frame))
    assert (candle_file.timeframe, candle_file.timeframe_source) == ("1h", "timestamps")


def test_timeframe_inference_fails_on_unsupported_step(tmp_path: Path) -> None:
    error = _error(_parquet(tmp_path / "candles.parquet", _frame(5, step=7 * 60_000)))
    assert "cannot tell the timeframe" in error.problem and "420000 ms" in error.problem
    assert "--timeframe" in error.hint


def test_single_row_without_timeframe_in_name(tmp_path: Path) -> None:
    error = _error(_text(tmp_path / "candles.csv", HEADER + _csv_rows(1)))
    assert "cannot tell the timeframe: the file has a single candle" in error.problem
    assert "--timeframe" in error.hint


def test_single_row_with_timeframe_argument(tmp_path: Path) -> None:
    candle_file = read_candle_file(_text(tmp_path / "candles.csv", HEADER + _csv_rows(1)), timeframe="5m")
    assert len(candle_file.candles) == 1 and candle_file.timeframe == "5m"


# --- listing -------------------------------------------------------------------------------------


def test_candle_files_of_a_file(tmp_path: Path) -> None:
    path = _text(tmp_path / "anything.txt", "")
    assert candle_files(path) == [path]


def test_candle_files_of_a_directory_sorted_and_recursive(tmp_path: Path) -> None:
    for name in ["b.csv", "a.parquet", "sub/c.csv.gz", "sub/deeper/a.pq", "a-b.csv", "notes.txt", "z.json"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "dir.csv").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in candle_files(tmp_path)]
    assert found == ["a-b.csv", "a.parquet", "b.csv", "sub/c.csv.gz", "sub/deeper/a.pq"]


def test_candle_files_of_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(CandleFileError, match="no candle files") as caught:
        candle_files(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_candle_files_of_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CandleFileError, match="no such file or directory"):
        candle_files(tmp_path / "absent")


def test_error_message_shape() -> None:
    error = CandleFileError(Path("a/b.csv"), "broken", "fix it")
    assert (error.path, error.problem, error.hint) == ("a/b.csv", "broken", "fix it")
    assert str(error) == "a/b.csv: broken; fix it"
    assert str(CandleFileError("a.csv", "broken")) == "a.csv: broken"
    assert isinstance(error, ValueError)


def test_datetime_before_1973(tmp_path: Path) -> None:
    text = "date,open,high,low,close,volume\n1970-01-02,1,2,0.5,1.5,10\n"
    error = _error(_text(tmp_path / "x_5m.csv", text))
    assert "column 'date' row 1: '1970-01-02' is outside the years 1973 to 5138" in error.problem


def test_parquet_datetime_before_1973(tmp_path: Path) -> None:
    table = pa.Table.from_pandas(_frame(2), preserve_index=False).replace_schema_metadata(None)
    moments = pa.array([86_400_000, T0], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    pq.write_table(table.set_column(0, "timestamp", moments), tmp_path / "x_5m.parquet")
    error = _error(tmp_path / "x_5m.parquet")
    assert "row 1: 1970-01-02T00:00:00+00:00 is outside the years 1973 to 5138" in error.problem


def test_parquet_written_from_an_indexed_frame(tmp_path: Path) -> None:
    frame = _frame(3)
    frame["date"] = pd.to_datetime(frame.pop("timestamp"), unit="ms", utc=True)
    frame.set_index("date").to_parquet(tmp_path / "x_5m.parquet")
    candles = read_candle_file(tmp_path / "x_5m.parquet").candles
    assert tuple(candles.columns) == CANDLE_COLUMNS
    assert candles["timestamp"].tolist() == _frame(3)["timestamp"].tolist()
