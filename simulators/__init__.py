"""fleetcare simulators."""
