"""fleetcare api."""
