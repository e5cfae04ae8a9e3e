"""The policy that turns predictions into alerts, orders, reservations and shipments."""
