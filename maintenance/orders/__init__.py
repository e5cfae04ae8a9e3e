"""Maintenance orders: lifecycle, completion (renewal, recorded lives), failures."""
