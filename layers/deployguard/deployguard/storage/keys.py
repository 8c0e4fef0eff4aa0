"""Key design of the single DeploymentsTable.

Every item has ``pk`` and ``sk``; two sparse global secondary indexes serve the
queries the product needs, none of them a scan:

| access pattern                               | index   | key condition                                   |
|----------------------------------------------|---------|-------------------------------------------------|
| a deployment                                 | table   | pk = DEP#<id>, sk = META                        |
| history of deployment X (everything, in time) | table   | pk = DEP#<id>, sk begins_with AS# / AUDIT# / ...|
| the minute loop's work, one Query (below)     | gsi1    | gsi1pk = LOOP, gsi1sk <= <now>                  |
| active deployments                           | gsi1    | gsi1pk = LOOP, gsi1sk begins_with !A#           |
| promoted, in post-deployment monitoring      | gsi1    | gsi1pk = LOOP, gsi1sk = <next due>#M#<id>       |
| ended unpromoted, traffic check due          | gsi1    | gsi1pk = TRAFFIC, gsi1sk = <next check>#E#<id>  |
| promoted, traffic check due (its first minutes) | gsi1 | gsi1pk = TRAFFIC, gsi1sk = <next check>#P#<id>  |
| events recorded, not yet published (outbox)  | gsi1    | gsi1pk = LOOP, gsi1sk = <event time>#O#<id>     |
| deployments of service S in environment E    | gsi2    | gsi2pk = SVC#<S>#ENV#<E>, newest first by gsi2sk|
| every service/environment ever deployed      | table   | pk = CATALOG, sk = SVC#<S>#ENV#<E>              |
| open incidents / open approvals              | gsi1    | gsi1pk = LOOP, gsi1sk begins_with !I# / !P#     |
| all incidents, newest first                  | gsi2    | gsi2pk = INCIDENTS                              |
| a record that must exist once (dedup, locks) | table   | pk = <KIND>#<key>, sk = <KIND>                  |

The minute loop reads everything it works on in one Query of the ``LOOP`` partition,
``gsi1sk <= <now>``: what it always looks at sorts first (``!`` before any time: active
deployments ``!A#``, open incidents ``!I#``, open approvals ``!P#``), then what is due by
time (a monitored deployment's next assessment, an unpublished event), so a monitored
deployment that is not due is not read. The traffic checks of ended deployments are in a
partition of their own (``TRAFFIC``), read by the traffic check function on its own schedule.

Kinds of once-only and state records: ``DEDUP``/``COOLDOWN``/``NOTIFY-DIGEST``
(notifications), ``INCIDENT``, ``INCIDENT-KEY``, ``ALERT-RATE``, ``APPROVAL``
(incidents), ``REMEDIATION``, ``REMEDIATION-LOCK``, ``REMEDIATION-COOLDOWN``,
``REMEDIATION-BREAKER`` (remediation).

Items other than the deployment record carry ``expires_at`` (epoch seconds), the
table's TTL attribute, so the audit trail is kept for a configurable retention.
"""

from __future__ import annotations

from datetime import datetime

PK = "pk"
SK = "sk"
GSI1 = "gsi1"
GSI1_PK = "gsi1pk"
GSI1_SK = "gsi1sk"
GSI2 = "gsi2"
GSI2_PK = "gsi2pk"
GSI2_SK = "gsi2sk"
TTL_ATTRIBUTE = "expires_at"

META = "META"
LOOP = "LOOP"  # the minute loop's partition of gsi1
TRAFFIC = "TRAFFIC"  # the traffic checks' partition of gsi1 (ended unpromoted deployments, by next check)
ALWAYS = "!"  # sorts before any time: listed on every tick
ACTIVE = "A"
INCIDENT_OPEN = "I"
APPROVAL_OPEN = "P"
MONITORING = "M"
ENDED = "E"
PROMOTED = "P"  # a promoted deployment's traffic check (item ``sk = PROMOTION_CHECK`` next to its record)
PROMOTION_CHECK = "PROMOTION_CHECK"
OUTBOX = "O"
CATALOG = "CATALOG"  # one item per service/environment pair that has deployments

# sort-key prefixes of a deployment's history
ASSESSMENT = "AS#"
AUDIT = "AUDIT#"
EVENT = "EVENT#"
ALERT = "ALERT#"
NOTIFICATION = "NOTIF#"


def deployment_pk(deployment_id: str) -> str:
    return f"DEP#{deployment_id}"


def service_env_pk(service: str, environment: str) -> str:
    return f"SVC#{service}#ENV#{environment}"


def time_key(at: datetime) -> str:
    """Sortable UTC timestamp with microseconds, so keys order by time."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def loop_always(kind: str, at: datetime, unique: str) -> str:
    """gsi1sk of an item the minute loop lists on every tick (active deployment, open incident or approval)."""
    return f"{ALWAYS}{kind}#{time_key(at)}#{unique}"


def loop_due(kind: str, due: datetime, unique: str) -> str:
    """gsi1sk of an item the minute loop reads once ``due`` has come."""
    return f"{time_key(due)}#{kind}#{unique}"


def loop_kind(gsi1sk: str) -> str:
    """The kind of a LOOP item from its gsi1sk."""
    if gsi1sk.startswith(ALWAYS):
        return gsi1sk[1]
    return gsi1sk.split("#", 2)[1]


def history_sk(prefix: str, at: datetime, unique: str) -> str:
    return f"{prefix}{time_key(at)}#{unique}"


def singleton_key(kind: str, key: str) -> tuple[str, str]:
    """pk/sk of a record that must exist at most once (dedup marker, lock, idempotency)."""
    return f"{kind}#{key}", kind
