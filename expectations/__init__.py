"""Great Expectations suites as code, and the runner that builds Data Docs.

Filled in by the data-validation work; empty for now.
"""
