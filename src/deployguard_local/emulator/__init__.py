"""The embedded AWS: moto in-process, shaped by template.yaml, with a simulated clock.

- Tables, topic, queue, functions and the state machine are created from
  template.yaml (keys, names, ASL definition with its DefinitionSubstitutions).
- Step Functions executions run on moto's ASL interpreter; their Lambda tasks run the
  real handlers of ``functions/`` in this process.
- Wait states and retry back-offs advance a simulated clock instead of sleeping, so
  a ten-minute canary runs in seconds; listeners on the clock (the demo's traffic)
  see every simulated minute go by, and so, when asked (:meth:`EmbeddedAws.follow_schedules`),
  do the template's EventBridge schedules: their functions run at every boundary passed.

Gaps of moto that are filled here, and only these: invoking a Lambda function runs
its handler in-process (moto would need Docker), asynchronously for SNS deliveries as
AWS does; GetMetricData answers percentile statistics (p50, p99 ...) from the
datapoints it holds, and looks them up through an index instead of a scan per query
and period (same answers, usable at 500 queries a call).

Split by service: :mod:`.embedded` (``EmbeddedAws``: lifecycle, moto's gaps installed),
:mod:`.stack` (the template's resources), :mod:`.lambda_runtime` (handlers in-process, asynchronous
invocations), :mod:`.dynamodb`, :mod:`.cloudwatch`, :mod:`.stepfunctions` (simulated waits),
:mod:`.schedules` (EventBridge schedules on the clock), :mod:`.clock`, :mod:`.sample` (the sample
application), :mod:`.environment`. CodeDeploy, ECS and EventBridge targets are filled by
:mod:`deployguard_local.codedeploy`, :mod:`deployguard_local.ecs` and :mod:`deployguard_local.eventbridge`.
"""

from deployguard_local.emulator.clock import ClockListener, ListeningClock
from deployguard_local.emulator.dynamodb import atomic_dynamodb, transactions_without_table_copy
from deployguard_local.emulator.embedded import EmbeddedAws, EmbeddedAwsClosed
from deployguard_local.emulator.environment import REPO_ROOT, _environment
from deployguard_local.emulator.lambda_runtime import AsyncInvoker, FunctionRegistry, LambdaContext, LocalFunction
from deployguard_local.emulator.sample import sample_handler
from deployguard_local.emulator.schedules import ScheduleRun, rate_seconds, schedule_boundaries
from deployguard_local.minutes import minute_floor, minutes_between

__all__ = [
    "REPO_ROOT",
    "AsyncInvoker",
    "ClockListener",
    "EmbeddedAws",
    "EmbeddedAwsClosed",
    "FunctionRegistry",
    "LambdaContext",
    "ListeningClock",
    "LocalFunction",
    "ScheduleRun",
    "_environment",
    "atomic_dynamodb",
    "minute_floor",
    "minutes_between",
    "rate_seconds",
    "sample_handler",
    "schedule_boundaries",
    "transactions_without_table_copy",
]
