"""Configuration of notification channels, role-based routes and noise control.

This is the ``notifications:`` section of the DeployGuard configuration file. Secrets
(webhook URLs, PagerDuty routing keys, HMAC signing keys) are never written here:
a channel names where they live (``url_parameter``: an SSM SecureString,
``url_secret``: a Secrets Manager secret, ``name#json_key`` for a key of a JSON
secret). A literal ``url:`` / ``routing_key:`` / ``signing_key:`` is accepted only
in local mode (``DEPLOYGUARD_LOCAL=1``), checked when the router starts.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployguard.exceptions import ConfigError
from deployguard.models import DeploymentEvent, EventType, Severity
from deployguard.notification.urlsafety import check_allowlist

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

DEFAULT_ALLOWED_HOSTS = [
    "hooks.slack.com",
    "*.webhook.office.com",
    "*.logic.azure.com",
    "events.pagerduty.com",
    "events.eu.pagerduty.com",
]


logger = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class ChannelKind(StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    PAGERDUTY = "pagerduty"
    WEBHOOK = "webhook"
    EMAIL = "email"
    SMS = "sms"


class SecretSource(_Strict):
    """Where one secret value comes from; exactly one of the three is set."""

    field: str
    value: str | None = None
    parameter: str | None = None
    secret: str | None = None

    @property
    def is_literal(self) -> bool:
        return self.value is not None

    def describe(self) -> str:
        """Where the secret lives, safe to log (never the value)."""
        if self.parameter:
            return f"ssm:{self.parameter}"
        if self.secret:
            return f"secretsmanager:{self.secret}"
        return f"literal {self.field}"


def _one_source(model: BaseModel, field: str, required: bool) -> SecretSource | None:
    value = getattr(model, field)
    parameter = getattr(model, f"{field}_parameter")
    secret = getattr(model, f"{field}_secret")
    given = [v for v in (value, parameter, secret) if v]
    if len(given) > 1:
        raise ValueError(f"set only one of {field}, {field}_parameter, {field}_secret")
    if not given:
        if required:
            raise ValueError(f"one of {field}_parameter, {field}_secret (or {field} in local mode) is required")
        return None
    return SecretSource(field=field, value=value or None, parameter=parameter or None, secret=secret or None)


class RateLimit(_Strict):
    max_messages: int = Field(default=20, ge=1, le=1000)
    per_seconds: int = Field(default=60, ge=1, le=3600)


class _ChannelBase(_Strict):
    # DeployGuard may hold this channel's messages back (cooldown, rate limit and digest)
    noise_controlled: ClassVar[bool] = True

    rate_limit: RateLimit | None = Field(
        default=None, description="per-channel limit; over it, events are held and sent as one digest"
    )
    enabled: bool = True

    def secret_sources(self) -> list[SecretSource]:
        return []


class _UrlChannel(_ChannelBase):
    url: str | None = Field(default=None, description="literal URL: local mode only")
    url_parameter: str | None = None
    url_secret: str | None = None

    @model_validator(mode="after")
    def _url_source(self) -> _UrlChannel:
        _one_source(self, "url", required=True)
        return self

    def url_source(self) -> SecretSource:
        source = _one_source(self, "url", required=True)
        assert source is not None
        return source

    def secret_sources(self) -> list[SecretSource]:
        return [self.url_source()]


class SlackChannel(_UrlChannel):
    type: Literal["slack"] = "slack"


class TeamsChannel(_UrlChannel):
    type: Literal["teams"] = "teams"


class WebhookChannel(_UrlChannel):
    type: Literal["webhook"] = "webhook"
    signing_key: str | None = Field(default=None, description="literal HMAC key: local mode only")
    signing_key_parameter: str | None = None
    signing_key_secret: str | None = None
    signature_header: str = "X-DeployGuard-Signature"

    @model_validator(mode="after")
    def _key_source(self) -> WebhookChannel:
        _one_source(self, "signing_key", required=True)
        return self

    def signing_key_source(self) -> SecretSource:
        source = _one_source(self, "signing_key", required=True)
        assert source is not None
        return source

    def secret_sources(self) -> list[SecretSource]:
        return [self.url_source(), self.signing_key_source()]


class PagerDutyChannel(_ChannelBase):
    # PagerDuty keeps an incident's state by dedup_key: a trigger, acknowledge or resolve held back is a
    # page missed or an incident left open, and PagerDuty groups repeated triggers itself. So no
    # cooldown, rate limit or digest applies here, only the dedup of SNS redeliveries.
    noise_controlled: ClassVar[bool] = False

    type: Literal["pagerduty"] = "pagerduty"
    url: str = Field(default="https://events.pagerduty.com/v2/enqueue", description="Events API v2 endpoint")
    routing_key: str | None = Field(default=None, description="literal integration key: local mode only")
    routing_key_parameter: str | None = None
    routing_key_secret: str | None = None
    trigger_severity: Severity = Field(
        default=Severity.CRITICAL, description="events at or above this severity trigger an incident"
    )
    resolve_after_healthy_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="flap guard: an assessment back to healthy resolves the deployment's PagerDuty incidents only "
        "once it stayed healthy this long (an unhealthy assessment meanwhile cancels the resolve, so a flapping "
        "canary keeps one incident, updated by its triggers, instead of a new page each time); sent by the "
        "router's flush. 0: resolve at once. Triggers are never held, and a completed deployment, promotion, "
        "canary or rollback resolves at once",
    )

    @model_validator(mode="after")
    def _key_source(self) -> PagerDutyChannel:
        _one_source(self, "routing_key", required=True)
        return self

    def routing_key_source(self) -> SecretSource:
        source = _one_source(self, "routing_key", required=True)
        assert source is not None
        return source

    def secret_sources(self) -> list[SecretSource]:
        return [self.routing_key_source()]


class EmailChannel(_ChannelBase):
    """Email through the subscriptions (protocol ``email``) of an SNS topic."""

    type: Literal["email"] = "email"
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")


class SmsChannel(_ChannelBase):
    """SMS through the subscriptions (protocol ``sms``) of an SNS topic."""

    type: Literal["sms"] = "sms"
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")
    sender_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,11}$")


ChannelSettings = Annotated[
    SlackChannel | TeamsChannel | PagerDutyChannel | WebhookChannel | EmailChannel | SmsChannel,
    Field(discriminator="type"),
]


def _patterns_valid(patterns: list[str], known: list[str], what: str) -> list[str]:
    for i, pattern in enumerate(patterns):
        if not any(fnmatch.fnmatchcase(k, pattern) for k in known):
            raise ValueError(f"{what}.{i}: {pattern!r} matches no {what[:-1].replace('_', ' ')}")
    return patterns


class Role(_Strict):
    """A group of people and the channels that reach them (``ops``, ``dev``)."""

    channels: list[str] = Field(min_length=1)


class Route(_Strict):
    """Which events go where. Empty filters match everything."""

    name: str | None = None
    roles: list[str] = Field(default_factory=list, description="send to these roles' channels")
    channels: list[str] = Field(default_factory=list, description="and to these channels")
    channel_kinds: list[ChannelKind] = Field(
        default_factory=list, description="keep only channels of these kinds (dev: [slack])"
    )
    event_types: list[str] = Field(default_factory=lambda: ["*"], description="event types, globs allowed")
    min_severity: Severity = Severity.INFO
    environments: list[str] = Field(default_factory=list, description="globs; empty = every environment")
    services: list[str] = Field(default_factory=list, description="globs; empty = every service")

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        return _patterns_valid(value, [t.value for t in EventType], "event_types")

    @model_validator(mode="after")
    def _has_target(self) -> Route:
        if not self.roles and not self.channels:
            raise ValueError("a route needs roles or channels")
        return self

    def matches(self, event: DeploymentEvent) -> bool:
        if event.severity.rank < self.min_severity.rank:
            return False
        if not any(fnmatch.fnmatchcase(event.event_type.value, p) for p in self.event_types):
            return False
        if self.environments and not any(fnmatch.fnmatchcase(event.environment, p) for p in self.environments):
            return False
        return not self.services or any(fnmatch.fnmatchcase(event.service, p) for p in self.services)


class ServiceOverride(_Strict):
    """Per-service channel overrides: swap a channel for another, add channels."""

    replace: dict[str, str] = Field(default_factory=dict, description="channel -> channel used instead")
    add_channels: list[str] = Field(default_factory=list)
    min_severity: Severity | None = Field(default=None, description="raise the threshold for this service")


class DigestSettings(_Strict):
    window_seconds: int = Field(
        default=60, ge=1, le=3600, description="held events are sent as one digest once the oldest is this old"
    )
    max_events: int = Field(default=50, ge=2, le=500, description="events listed in one digest message")


class DeliverySettings(_Strict):
    max_attempts: int = Field(default=4, ge=1, le=10)
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    read_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    backoff_base_seconds: float = Field(default=0.5, ge=0, le=30)
    backoff_max_seconds: float = Field(default=20.0, ge=0, le=300)
    max_retry_after_seconds: float = Field(
        default=60.0, ge=0, le=900, description="a longer Retry-After sends the message to the dead-letter queue"
    )
    deadline_seconds: float = Field(default=120.0, gt=0, le=900, description="time budget of one delivery")


class NoiseSettings(_Strict):
    dedup_ttl_seconds: int = Field(default=86_400, ge=60, description="how long a delivered event id is remembered")
    cooldown_seconds: int = Field(
        default=300, ge=0, description="same deployment, event type and status: at most once per cooldown"
    )
    cooldown_overrides: dict[EventType, int] = Field(default_factory=dict)
    bypass_severity: Severity = Field(
        default=Severity.CRITICAL, description="at or above: never rate limited or held for a digest"
    )
    default_rate_limit: RateLimit = Field(default_factory=RateLimit)


GUARD_ALARM_DEFAULT_ROUTES = ["oncall-primary"]  # the role the default escalation policies page first


class GuardAlarmSettings(_Strict):
    """DeployGuard's own CloudWatch alarms (ALARM and OK, published to the operator topic the router is
    subscribed to): sent as alerts of the service ``service`` (``alert`` events whose ``details.kind`` is
    ``guard_alarm``), so that routes select them like any alert, and to ``routes`` besides."""

    enabled: bool = Field(default=True, description="route the guard's own alarms; off: they are logged only")
    routes: list[str] = Field(
        default_factory=lambda: list(GUARD_ALARM_DEFAULT_ROUTES),
        description="route, role or channel names every guard alarm goes to besides the routes that match it; "
        "by default oncall-primary (the role the default escalation pages), when the configuration defines it",
    )
    severity: Severity = Field(
        default=Severity.CRITICAL,
        description="severity of an alarm in ALARM (and of its OK, so that it reaches the same routes and "
        "resolves PagerDuty's incident); INSUFFICIENT_DATA is a warning",
    )
    service: str = Field(
        default="deployguard",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="the service name guard alarms carry (routes' services filters, service_overrides)",
    )


class NotificationSettings(_Strict):
    """The ``notifications:`` section of the DeployGuard configuration file."""

    enabled: bool = True
    allowed_hosts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_HOSTS),
        description="hosts webhooks may call; '*.example.com' matches subdomains",
    )
    channels: dict[str, ChannelSettings] = Field(default_factory=dict)
    roles: dict[str, Role] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    service_overrides: dict[str, ServiceOverride] = Field(default_factory=dict)
    noise: NoiseSettings = Field(default_factory=NoiseSettings)
    digest: DigestSettings = Field(default_factory=DigestSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    guard_alarms: GuardAlarmSettings = Field(default_factory=GuardAlarmSettings)

    @field_validator("allowed_hosts")
    @classmethod
    def _allowlist(cls, value: list[str]) -> list[str]:
        return check_allowlist(value)

    @field_validator("channels", "roles")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"{name!r}: names are letters, digits, '_', '.', '-' (at most 64)")
        return value

    @model_validator(mode="after")
    def _references(self) -> NotificationSettings:
        for role_name, role in self.roles.items():
            for i, channel in enumerate(role.channels):
                self._known_channel(channel, f"roles.{role_name}.channels.{i}")
        for r, route in enumerate(self.routes):
            for i, role_name in enumerate(route.roles):
                if role_name not in self.roles:
                    raise ValueError(f"routes.{r}.roles.{i}: unknown role {role_name!r}")
            for i, channel in enumerate(route.channels):
                self._known_channel(channel, f"routes.{r}.channels.{i}")
        for service, override in self.service_overrides.items():
            for old, new in override.replace.items():
                self._known_channel(old, f"service_overrides.{service}.replace")
                self._known_channel(new, f"service_overrides.{service}.replace.{old}")
            for i, channel in enumerate(override.add_channels):
                self._known_channel(channel, f"service_overrides.{service}.add_channels.{i}")
        if "routes" in self.guard_alarms.model_fields_set:  # the default applies only where it is defined
            known = self.target_names()
            for i, name in enumerate(self.guard_alarms.routes):
                if name not in known:
                    raise ValueError(f"guard_alarms.routes.{i}: unknown route, role or channel {name!r}")
        for warning in self.ignored_settings():  # accepted before, so a stored configuration still loads
            logger.warning("configuration setting ignored", extra={"setting": warning})
        return self

    def ignored_settings(self) -> list[str]:
        """Settings the configuration gives that never apply, one line each (``config validate`` warns):
        a ``rate_limit`` on a channel that is never rate limited (PagerDuty: a page, acknowledge or
        resolve held back would be lost to the incident)."""
        return [
            f"notifications.channels.{name}.rate_limit: ignored, a {settings.type} channel is never rate limited "
            "(a page, acknowledge or resolve held back would be lost to the incident); remove it"
            for name, settings in self.channels.items()
            if not settings.noise_controlled and settings.rate_limit is not None
        ]

    def _known_channel(self, name: str, where: str) -> None:
        if name not in self.channels:
            raise ValueError(f"{where}: unknown channel {name!r}")

    def route_channels(self, event: DeploymentEvent) -> list[str]:
        """The channels an event goes to, each once, in configuration order."""
        override = self.service_overrides.get(event.service)
        if override and override.min_severity and event.severity.rank < override.min_severity.rank:
            return []
        chosen: list[str] = []
        targets: list[tuple[list[str], Route | None]] = [
            ([c for role in route.roles for c in self.roles[role].channels] + route.channels, route)
            for route in self.routes
            if route.matches(event)
        ]
        targets.append((self.explicit_channels(event), None))
        for names, route in targets:
            for name in names:
                if override:
                    name = override.replace.get(name, name)
                channel = self.channels[name]
                if route is not None and route.channel_kinds and channel.type not in route.channel_kinds:
                    continue
                if name not in chosen:
                    chosen.append(name)
        if override and chosen:
            chosen += [c for c in override.add_channels if c not in chosen]
        return [c for c in chosen if self.channels[c].enabled]

    def explicit_channels(self, event: DeploymentEvent) -> list[str]:
        """Channels named by the event itself: ``details.routes`` of alerts and escalation pages, and
        ``guard_alarms.routes`` for a guard alarm.

        Each name is a route (its roles and channels), a role or a channel; unknown names
        are left out (see :meth:`unknown_targets`).
        """
        names = event.details.get("routes")
        names = list(names) if isinstance(names, list) else []
        if event.event_type is EventType.ALERT and event.details.get("kind") == "guard_alarm":
            names += self.guard_alarm_routes()  # this configuration's, also for one read from the dead-letter queue
        found: list[str] = []
        by_name = {r.name: r for r in self.routes if r.name}
        for name in (n for n in names if isinstance(n, str)):
            if name in by_name:
                route = by_name[name]
                found += [c for role in route.roles for c in self.roles[role].channels] + route.channels
            elif name in self.roles:
                found += self.roles[name].channels
            elif name in self.channels:
                found.append(name)
        return found

    def target_names(self) -> set[str]:
        """What ``details.routes`` may name: a route (by its name), a role or a channel."""
        return {r.name for r in self.routes if r.name} | set(self.roles) | set(self.channels)

    def guard_alarm_routes(self) -> list[str]:
        """Where every guard alarm goes besides the routes that match it: ``guard_alarms.routes`` (the
        default ``oncall-primary`` only when the configuration defines it)."""
        known = self.target_names()
        return [name for name in self.guard_alarms.routes if name in known]

    def unknown_targets(self, event: DeploymentEvent) -> list[str]:
        names = event.details.get("routes")
        if not isinstance(names, list):
            return []
        known = self.target_names()
        return [str(n) for n in names if n not in known]

    def noise_controlled(self, channel: str) -> bool:
        """Whether cooldown and rate limit may hold this channel's messages back (not PagerDuty's)."""
        return self.channels[channel].noise_controlled

    def rate_limit(self, channel: str) -> RateLimit | None:
        """The channel's rate limit; None for a channel that is never rate limited (PagerDuty)."""
        if not self.noise_controlled(channel):
            return None
        return self.channels[channel].rate_limit or self.noise.default_rate_limit

    def cooldown_seconds(self, event_type: EventType) -> int:
        return self.noise.cooldown_overrides.get(event_type, self.noise.cooldown_seconds)


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_notification_settings(document: Any, source: str, prefix: str = "notifications") -> NotificationSettings:
    """Validate a loaded ``notifications:`` mapping; errors name the source and the field."""
    if document is None:
        return NotificationSettings()
    if not isinstance(document, dict):
        raise ConfigError("must be a mapping", source=source, field=prefix)
    try:
        return NotificationSettings.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _field_path(first["loc"])
        more = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(first["msg"] + more, source=source, field=f"{prefix}.{loc}" if loc else prefix) from exc
