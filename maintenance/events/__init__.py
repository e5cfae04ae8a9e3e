"""The outbox of customer-facing events."""
