"""The fleet registry: customers, API keys, sites, assets and the metric catalogue."""
