"""Alerting domain: failed runs and failed asset checks notify a webhook or the log."""
