"""fleetcare models."""
