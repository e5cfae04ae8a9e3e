"""Parts, depots, inventory, reservations, shipments and replenishment."""
