"""Billing: usage metering, invoices, partner statements, plan advice."""
