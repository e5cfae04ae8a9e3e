"""fleetcare ingest."""
