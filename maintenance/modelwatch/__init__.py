"""The model watch: drift checks, ``model.drift_detected``, retraining on schedule and drift."""
