"""Key design of the single DeploymentsTable.

Every item has ``pk`` and ``sk``; two sparse global secondary indexes serve the
queries the product needs, none of them a scan:

| access pattern                               | index   | key condition                                   |
|----------------------------------------------|---------|-------------------------------------------------|
| a deployment                                 | table   | pk = DEP#<id>, sk = META                        |
| history of deployment X (everything, in time) | table   | pk = DEP#<id>, sk begins_with AS# / AUDIT# / ...|
| active deployments                           | gsi1    | gsi1pk = ACTIVE (only set while active)         |
| promoted, in post-deployment monitoring      | gsi1    | gsi1pk = MONITOR (24 hours after promotion)     |
| ended unpromoted, traffic check due         | gsi1    | gsi1pk = ENDED, gsi1sk = next check (reconciler)|
| events recorded, not yet published (outbox)  | gsi1    | gsi1pk = OUTBOX, gsi1sk = event time            |
| deployments of service S in environment E    | gsi2    | gsi2pk = SVC#<S>#ENV#<E>, newest first by gsi2sk|
| every service/environment ever deployed      | table   | pk = CATALOG, sk = SVC#<S>#ENV#<E>              |
| open incidents / open approvals              | gsi1    | gsi1pk = INCIDENT#OPEN / APPROVAL#OPEN          |
| all incidents, newest first                  | gsi2    | gsi2pk = INCIDENTS                              |
| a record that must exist once (dedup, locks) | table   | pk = <KIND>#<key>, sk = <KIND>                  |

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
ACTIVE = "ACTIVE"
MONITORING = "MONITOR"
ENDED = "ENDED"
OUTBOX = "OUTBOX"
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


def history_sk(prefix: str, at: datetime, unique: str) -> str:
    return f"{prefix}{time_key(at)}#{unique}"


def singleton_key(kind: str, key: str) -> tuple[str, str]:
    """pk/sk of a record that must exist at most once (dedup marker, lock, idempotency)."""
    return f"{kind}#{key}", kind
