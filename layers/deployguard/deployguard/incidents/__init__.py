"""Incidents: opened or joined by alerts, acknowledged and resolved by people or automatically,
escalated until acknowledged (see :mod:`deployguard.incidents.escalation`)."""
