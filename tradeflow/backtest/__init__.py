"""The backtest: bar-by-bar simulation over a snapshot, metrics, Monte Carlo, ablation, reports."""
