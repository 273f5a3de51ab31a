"""The audit chain: hash-chained entries, signed checkpoints, verification and lineage."""
