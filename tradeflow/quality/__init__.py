"""Data quality: pure checks behind the validation suites, consensus and reports."""
