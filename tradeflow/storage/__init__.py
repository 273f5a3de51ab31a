"""Storage: object stores (local, S3) and the Parquet lake."""
