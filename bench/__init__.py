"""tradeflow benchmarks: ``python -m bench`` (or ``make bench``).

Six questions, answered with numbers against the local simulated venues:

1. Throughput: what does the whole ``ingest-market-data`` flow (fetch, parse, store, manifest,
   under Prefect) cost compared with a bare loop of ccxt ``fetch_ohlcv`` calls over the very
   same pages? The project's goal is at most 1.25x the bare loop.
2. Second run: the real CLI run twice over one pinned window; the second run finds nothing new
   and should take a small fraction of the first. The pipeline process's peak RSS is reported.
3. Validation: what do the Great Expectations candle and cross-venue suites cost on one venue's
   batch of 1m candles (one day, 90 days, per million candles), and does validating a day cost
   less than fetching it?
4. Audit chain: how fast entries are appended (local and S3, batched or not), how close
   verification comes to the bare SHA-256 work (goal: within 3x), and what share of an
   ingestion run the chain costs (goal: under 5 %).
5. Features, training and inference: how long the full feature matrix takes on 5 symbols x 1
   year of 1m candles (and its peak RSS), how the indicators both compute compare with TA-Lib
   on the same arrays (goal: within 2x), each model's fit seconds per walk-forward fold, and
   the latency of a one-row LightGBM ``Booster.predict`` (goal: p99 under 1 ms).
6. Backtest: on the same entry/exit signals, fees and data, does the engine's signals mode make
   the same trades and final equity as vectorbt's ``Portfolio.from_signals``, and is it no
   slower than vectorbt warm (goal: ratio <= 1)? A parameter sweep's backtests per second on
   100k bars, and the wall time of 10,000 Monte Carlo scenarios.

Modules:
    cli: argument parsing and the order of the sections.
    workload: the benchmark config file, the pinned window and the pages to fetch.
    baseline: the bare ccxt fetch loops (sequential and thread pool).
    pipeline: one timed run of the Prefect flow into a fresh lake.
    throughput: section 1 (warm-up, cold run, alternating repetitions, medians).
    second_run: section 2 and 3 (the CLI as a subprocess, wall times, peak RSS).
    validation: section 4 (GX suites vs fetching; runs as ``python -m bench.validation``).
    audit: section 5 (the audit chain; runs as ``python -m bench.audit``).
    features: section 6 (matrix, TA-Lib, training, inference; runs as ``python -m bench.features``).
    report: the rich tables, the verdict lines and the JSON results file.
"""
