"""Alert rules (configuration, in a small safe expression language) and the alert engine.

Entry point: :class:`deployguard.alerts.engine.AlertEngine`. This package imports
nothing on its own, so ``deployguard.config`` can import ``alerts.settings`` freely.
"""
