"""Webhook delivery: customer endpoints, signed deliveries (Standard Webhooks), retries, replay."""
