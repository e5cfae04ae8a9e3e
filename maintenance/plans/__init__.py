"""Plans: what a subscription includes and what it costs."""
