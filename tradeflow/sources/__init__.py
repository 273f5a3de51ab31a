"""Market data sources: the port (base) and its ccxt adapter."""
