"""The streaming execution engine: local order books, pre-trade risk, brokers."""
