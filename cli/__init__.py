"""The `fleetcare` command line: the composition of every sub-command, and `fleetcare up`."""
