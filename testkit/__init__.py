"""Fixtures shared by the tests and the benches (never imported by the product): throw-away
databases and synthetic histories written straight into the database."""
