"""tradeflow: a Prefect-orchestrated pipeline for crypto trading research and execution."""
