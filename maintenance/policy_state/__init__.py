"""The policy's due state per asset component (hysteresis), below both the policy and orders.

The policy reads and writes it for every prediction; completing an order locks it (in the
policy's lock order) and resets it, because a new life starts. It is its own package so that
orders need not import the policy, which imports orders.
"""
