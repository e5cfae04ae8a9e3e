"""What technicians found when closing orders, and the model page built on it."""
