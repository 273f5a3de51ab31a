"""Signals, portfolio allocation and risk: the code the backtest and the streaming flow share.

Everything here is pure (no I/O, no Prefect) and incremental-friendly: the backtest calls it bar
by bar exactly as the streaming execution flow calls it event by event.
"""
