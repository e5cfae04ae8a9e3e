"""Service partners: coverage of sites and regions, their keys and commissions."""
