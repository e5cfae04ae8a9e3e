"""Subscriptions: customer x plan x scope, their lifecycle, plan periods and entitlements."""
