"""Offline judgement of the maintenance strategies on simulated fleets (`fleetcare evaluate`)."""
