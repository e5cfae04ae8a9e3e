"""fleetcare maintenance."""
