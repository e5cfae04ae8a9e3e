"""Dunning: payment terms, payments, and what happens when an invoice is late."""
