"""Notification of deployment events: routing, channels, noise control, delivery.

Entry point: :class:`deployguard.notification.router.NotificationRouter`
(``route(event)``, ``flush_digests()``, ``redeliver(letter)``), configured by
:class:`deployguard.notification.settings.NotificationSettings` (the ``notifications:``
section of the configuration file).
"""
