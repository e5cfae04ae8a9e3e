"""Exporting predictions: each asset's latest RUL, interval, failure risk and due date."""
