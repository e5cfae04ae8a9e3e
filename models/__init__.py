"""fleetcare models: wear-model features, estimators and offline evaluation.

- :class:`models.features.WindowFeatures` — the one feature transformer, used unchanged
  in training (``transform``: a row per reading, computed from that reading and earlier
  ones of the same asset) and in scoring (``transform_last``: each asset's last row,
  vectorised over many assets). Input layout: id, usage since renewal, settings, metrics.
- :class:`models.estimators.RULRegressor` — capped RUL with split-conformal intervals
  (``predict``, ``predict_interval``).
- :class:`models.estimators.FailureRiskClassifier` — P(failure within ``horizon``).
- :class:`models.estimators.AnomalyScorer` — distance from healthy history (~1 healthy).
- :mod:`models.cmapss` — NASA C-MAPSS loader, ``evaluate_cmapss``, ``crossvalidate_cmapss``.
- :mod:`models.cli` — ``fleetcare models cmapss`` and ``fleetcare models cmapss-cv``.

No SQL or MQTT here: repositories hand these classes arrays.
"""
