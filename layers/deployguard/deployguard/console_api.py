"""The operations console's HTTP API (API Gateway HTTP API, payload 2.0): routes, errors, OpenAPI document.

The entry-point floor's presentation (as :mod:`deployguard.reporting` is for reports): the thin
handler ``functions/console_api/app.py`` adds the page's static assets and calls :func:`handle`.

Reads and writes are two functions with their own IAM roles (template.yaml): ``ConsoleReadFunction``
serves the GET routes and the page with a role that can only read, ``ConsoleWriteFunction`` the POST
routes. Each refuses the other's requests (405) before reading them, so a route pointed at the wrong
function fails plainly instead of half-working. Input goes through :mod:`deployguard.inbound`'s
bounds first (path, query and body sizes, JSON depth), then the routes' own (id patterns, lengths);
every refusal is a 400 whose message names the field.

Every error answers one shape, :class:`ErrorBody`: ``{"message": ..., "field": ...}``, ``field`` only for bad
input, named by where it is: ``path.<name>``, ``query.<name>``, ``body.<name>`` (dotted into nested bodies),
``header.content-type``, or a whole part (``path``, ``query``, ``body``). Unknown routes (404) and a body
that is not JSON (415) answer the same shape, not Powertools' own.

Reads: active canaries, deployments with filters, one deployment (bounded: its newest assessments, pages of
older ones and of its timeline, :mod:`deployguard.readmodels.detail`) and its report (the whole history, or
bounded when that would not fit one answer, :mod:`deployguard.reporting.bounded`), incidents, services.
Writes: the canary verbs (deployguard.workflows.control), emergency rollback of a service, incident
acknowledge / escalate / resolve, and people's answers to remediation requests (approve / reject a rollback an
incident asks; read too: the pending ones and a deployment's, deployguard.workflows.remediation_requests).
Every /api route needs an authorised caller (IAM SigV4 or a JWT, see template.yaml); writes need write
permission and are audited with the caller's identity. The OpenAPI document is generated from these routes
(GET /openapi.json, kept in docs/openapi.json).
The logic is in deployguard.workflows.console.
"""

import functools
import json
import os
import re
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployguard.aws.lambda_traffic import aws_error_code
from deployguard.exceptions import (
    CodeDeployError,
    ConflictError,
    ControlStateError,
    ForbiddenError,
    IncidentStateError,
    InvalidEventError,
    NotAuthorizedError,
    NotFoundError,
    StepFunctionsError,
    TrafficShiftError,
)
from deployguard.inbound import (
    RECORD_ID_PATTERN,
    SERVICE_NAME_PATTERN,
    bounded_http_request,
    invalid_from_errors,
)
from deployguard.incidents.models import Incident
from deployguard.models import DeploymentStatus
from deployguard.readmodels import (
    DeploymentDetail,
    DeploymentHistory,
    DeploymentPage,
    DeploymentQuery,
    DeploymentReader,
    DetailReader,
    QueryError,
    TimelinePage,
    parse_since,
)
from deployguard.readmodels.detail import (
    ASSESSMENT_BEFORE_PATTERN,
    DEFAULT_ASSESSMENTS,
    DEFAULT_TIMELINE,
    MAX_PAGE,
    RECENT_EVENTS,
    TIMELINE_BEFORE_PATTERN,
)
from deployguard.reporting import CONTENT_TYPES, ReportFormat
from deployguard.reporting.bounded import BoundedReport, render_within
from deployguard.workflows import runtime
from deployguard.workflows.console import (
    Caller,
    CanaryCard,
    EscalationOutcome,
    OperationsConsole,
    ServiceCard,
    caller_of,
    writer,
)
from deployguard.workflows.control import ControlOutcome, EmergencyRollbackOutcome, EmergencyRollbackRequest, Verb
from deployguard.workflows.remediation_requests import RemediationRequest, RemediationRequests

logger, metrics, tracer = runtime.logger, runtime.metrics, runtime.tracer
API_TITLE = "DeployGuard operations console"
API_VERSION = "1.0.0"

app = APIGatewayHttpResolver(enable_validation=True)
Access = Literal["read", "write"]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WHAT = "console request"

# path parameters from outside: ids and names of a bounded shape (deployguard.inbound)
DeploymentId = Annotated[str, PathParam(pattern=RECORD_ID_PATTERN, max_length=128, description="a deployment id")]
IncidentId = Annotated[str, PathParam(pattern=RECORD_ID_PATTERN, max_length=128, description="an incident id")]
ServiceName = Annotated[str, PathParam(pattern=SERVICE_NAME_PATTERN, max_length=128, description="a service")]


@functools.cache
def console() -> OperationsConsole:
    runtime.on_reset(console.cache_clear)
    engine = runtime.alert_engine()
    return OperationsConsole(DeploymentReader(runtime.repository()), runtime.control_service(), engine)


def write_scope() -> str:
    return os.environ.get("CONSOLE_WRITE_SCOPE", "deployguard/write")


def caller() -> Caller:
    authorizer = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer")
    return caller_of(authorizer, write_scope())


def actor() -> str:
    """The caller's identity, refused unless it may write: every write goes through here."""
    who = writer(caller())
    metrics.add_metric(name="ConsoleWrites", unit="Count", value=1)
    return who


# --------------------------------------------------------------------------- bodies


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReasonBody(Body):
    reason: str = Field(min_length=1, max_length=1000, description="why: kept in the audit trail")


class NotesBody(Body):
    notes: str = Field(default="", max_length=2000)


class ResolveBody(Body):
    notes: str = Field(min_length=1, max_length=2000, description="what was done")


class EmergencyRollbackBody(Body):
    reason: str = Field(min_length=1, max_length=1000)
    confirm: str = Field(max_length=128, description="the service's name again")
    environment: str | None = Field(default=None, pattern=SERVICE_NAME_PATTERN, max_length=128)
    from_version: str = Field(
        min_length=1,
        max_length=128,
        description="the version the caller saw live: the rollback is refused if another is live now, and a repeat "
        "of the same request changes nothing (instead of rolling back one more version)",
    )


class ErrorBody(BaseModel):
    """Every error's body (401, 403, 404, 409, 415, 400, 502)."""

    model_config = ConfigDict(extra="forbid")
    message: str
    field: str | None = Field(
        default=None,
        description="bad input only (absent otherwise): where the fault is, path.<name>, query.<name>, "
        "body.<name> (dotted into nested fields), header.content-type, or a whole part: path, query, body",
    )


# --------------------------------------------------------------------------- errors


LOCATIONS = ("path", "query", "body", "header", "request")
PATH_FIELDS = frozenset({"deployment_id", "incident_id", "service", "verb", "approval_id"})


def located(field: str) -> str:
    """A field named by where it is (``body.from_version``): the workflows and their models name a field
    alone (``confirm``, ``from_version``), which in a console request is the body's, or the path's id."""
    if field.split(".", 1)[0] in LOCATIONS:
        return field
    return f"path.{field}" if field in PATH_FIELDS else f"body.{field}"


def error_response(status: int, exc: Exception) -> Response[str]:
    body: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, InvalidEventError):
        # the workflows' refusals start with the field they name ("confirm: type the service name ...")
        match = re.match(r"([a-z_][a-z0-9_.]*): ", str(exc))
        named = exc.field or (match.group(1) if match else None)
        if named:
            body["field"] = located(named)
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body))


@app.not_found
def _no_route(_: Exception) -> Response[str]:
    """An unknown route (or method): the console's error shape, not Powertools' ``{"statusCode", ...}``."""
    return error_response(404, NotFoundError("no such route"))


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(_: RequestUnsupportedContentType) -> Response[str]:
    """A body sent as another type than JSON (Powertools would answer ``{"statusCode": 415, "detail": ...}``)."""
    return error_response(
        415, InvalidEventError(f"{WHAT}: the body must be sent as application/json", field="header.content-type")
    )


@app.exception_handler(NotAuthorizedError)
def _unauthorised(exc: NotAuthorizedError) -> Response[str]:
    return error_response(401, exc)


@app.exception_handler(ForbiddenError)
def _forbidden(exc: ForbiddenError) -> Response[str]:
    return error_response(403, exc)


@app.exception_handler(NotFoundError)
def _not_found(exc: NotFoundError) -> Response[str]:
    return error_response(404, exc)


@app.exception_handler([ControlStateError, IncidentStateError, ConflictError])
def _conflict(exc: Exception) -> Response[str]:
    return error_response(409, exc)


@app.exception_handler([InvalidEventError, QueryError, ValidationError])
def _bad_request(exc: Exception) -> Response[str]:
    if isinstance(exc, ValidationError):
        exc = invalid_from_errors(WHAT, exc.errors(), "body")
    return error_response(400, exc)


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response[str]:
    """Path, query or body outside the route's bounds: 400 naming the field (``path.deployment_id``)."""
    return error_response(400, invalid_from_errors(WHAT, list(exc.errors()), "request"))


DYNAMODB_OPERATIONS = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem",
     "TransactGetItems", "TransactWriteItems"}
)  # fmt: skip


@app.exception_handler([TrafficShiftError, CodeDeployError, StepFunctionsError, ClientError, BotoCoreError])
def _upstream(exc: Exception) -> Response[str]:
    """AWS's own message (the function's role ARN, the account id) stays in the log; the caller gets its code,
    and for a call DeployGuard makes itself (its table: DynamoDB) the service and operation that failed."""
    logger.exception("AWS refused a console action")
    code = aws_error_code(exc)
    if code is None and isinstance(exc, TrafficShiftError):  # DeployGuard's own check (the alias read back)
        return error_response(502, exc)
    where = ""
    if isinstance(exc, ClientError):
        operation = str(exc.operation_name)
        where = f" from {'DynamoDB ' if operation in DYNAMODB_OPERATIONS else ''}{operation}"
    return error_response(
        502, Exception(f"AWS refused the action: {code or type(exc).__name__}{where} (details in the log)")
    )


ERROR_DESCRIPTIONS = {
    400: "bad input: path, query or body outside its bounds (field names it)",
    401: "no authorised caller",
    403: "the caller may not write",
    404: "no such deployment, incident or service",
    409: "not possible in the current state",
    415: "the body is not application/json (field: header.content-type)",
    502: "AWS refused the action (its error code; the details are in the log)",
}


def documented(*errors: int, ok: str = "OK", content: dict[str, Any] | None = None) -> dict[int, Any]:
    """A route's responses for the OpenAPI document: 200 (the route's return model unless ``content``
    says otherwise) and the errors it answers, each an :class:`ErrorBody`. Powertools documents only what
    ``responses`` lists once it is given, and adds a 422 no route answers (removed in :func:`openapi_document`)."""
    responses: dict[int, Any] = {200: {"description": ok} | ({"content": content} if content else {})}
    for status in sorted(errors):
        responses[status] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"model": ErrorBody}},
        }
    return responses


READ = (400, 401)  # every /api route: the inbound bounds (400) and the identity (401) come first
READ_ONE = (*READ, 404)
WRITE = (*READ, 403, 409, 415)  # an emergency rollback of a service without deployments: 409, not 404

# --------------------------------------------------------------------------- reads


@app.get("/api/canaries", tags=["deployments"], responses=documented(*READ), summary="Deployments in flight")
def active_canaries() -> list[CanaryCard]:
    caller()
    return console().active()


@app.get(
    "/api/deployments",
    tags=["deployments"],
    responses=documented(*READ),
    summary="Deployments, newest first, with filters",
    description="A status filter examines about 1,000 deployments a request (each service/environment pair at "
    "least limit + 1, so more with many pairs): a page may hold fewer than limit items (even none) and still a "
    "next_cursor; follow it to go on. Ids are exact (no prefixes).",
)
def list_deployments(
    service: Annotated[str | None, Query(max_length=200)] = None,
    environment: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[DeploymentStatus | None, Query()] = None,
    since: Annotated[str | None, Query(max_length=64, description="7d, 12h, 30m, 2w or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> DeploymentPage:
    caller()
    try:
        query = DeploymentQuery(
            service=service or None,
            environment=environment or None,
            statuses=[status] if status else [],
            since=parse_since(since) if since else None,
            limit=limit,
            cursor=cursor or None,
        )
        return console().deployments(query)
    except QueryError as exc:  # a 400 naming its field, as every other bad input
        raise _query_field(exc) from exc


def _query_field(exc: QueryError) -> InvalidEventError:
    """The read model's QueryError (its message starts with the parameter: ``since: ...``, ``cursor: ...``)."""
    name, _, detail = str(exc).partition(": ")
    field = f"query.{name}" if name in ("since", "cursor") and detail else "query"
    return InvalidEventError(f"{WHAT}: field {field}: {detail or exc}", field=field)


@functools.cache
def details() -> DetailReader:
    """The bounded reads of one deployment (the page polls them every few seconds, however old the deployment)."""
    runtime.on_reset(details.cache_clear)
    return DetailReader(console().reader)


PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"items in the page (at most {MAX_PAGE})")]


@app.get(
    "/api/deployments/<deployment_id>",
    tags=["deployments"],
    responses=documented(*READ_ONE),
    summary="A deployment: its record, latest verdicts and newest assessments (its exact id)",
    description=f"Bounded whatever the deployment's age: the record, the outcome, the canary's latest verdict and "
    f"the latest post-deployment look in full, the newest `limit` assessments (default {DEFAULT_ASSESSMENTS}) and "
    f"the newest {RECENT_EVENTS} events and audit entries in time order, alerts and incidents (traffic steps, "
    "checks and remediation are the timeline's). `before` (its `assessments_before`) pages older assessments: "
    "the `limit` before it, in time order, and `assessments_before` again, null at the first. The whole "
    "history is the report's (GET .../report?format=json).",
)
def deployment_detail(
    deployment_id: DeploymentId,
    before: Annotated[
        str | None,
        Query(max_length=200, pattern=ASSESSMENT_BEFORE_PATTERN, description="an assessments_before: page back"),
    ] = None,
    limit: PageLimit = DEFAULT_ASSESSMENTS,
) -> DeploymentDetail:
    caller()
    detail = details().detail(deployment_id, before=before, limit=limit)
    detail.left_on_new = console().control.left_on_new(detail.deployment)  # GetAlias only for an ended one
    return detail


@app.get(
    "/api/deployments/<deployment_id>/timeline",
    tags=["deployments"],
    responses=documented(*READ_ONE),
    summary="One deployment in time order, a page at a time (the newest first)",
    description="The newest `limit` items older than `before` (a page's `next_before`; none: the newest), in time "
    "order within the page; `next_before` pages further back, null at the start. Pages put one after the other "
    "(older first) are the whole timeline: an instant is never split, so a page may hold a few more than "
    "`limit`; a page's oldest traffic move is shown as a step even when it repeats the weight before it (not "
    "read), so a step may appear twice across pages.",
)
def deployment_timeline(
    deployment_id: DeploymentId,
    before: Annotated[
        str | None, Query(max_length=64, pattern=TIMELINE_BEFORE_PATTERN, description="a page's next_before")
    ] = None,
    limit: PageLimit = DEFAULT_TIMELINE,
) -> TimelinePage:
    caller()
    return details().timeline(deployment_id, before=before, limit=limit)


@app.get(
    "/api/deployments/<deployment_id>/report",
    tags=["deployments"],
    summary="The deployment's health report (deployguard.reporting): html, md or json",
    description="The whole report when it fits one answer (5 MB). A bigger one (a canary looked at once a minute "
    "for a day) is bounded (deployguard.reporting.bounded): every verdict change, traffic step, alert and "
    "incident, the first and last looks in full, the looks in between counted by traffic step and verdict, "
    "saying how many and how to get them all (`deployguard report ID --format json`); as JSON it is a "
    "deployguard-report-bounded/1 document, the history with the kept looks and the summary of the others.",
    responses=documented(
        *READ_ONE,
        ok="the report, bounded when the whole one would not fit",
        content={
            "text/html": {"schema": {"type": "string"}},
            "text/markdown": {"schema": {"type": "string"}},
            "application/json": {"model": DeploymentHistory | BoundedReport},
        },
    ),
)
def deployment_report(
    deployment_id: DeploymentId,
    format: Annotated[ReportFormat, Query()] = "html",
) -> Response[str]:
    caller()
    history = console().history(deployment_id)
    return Response(200, CONTENT_TYPES[format], render_within(history, format))


@app.get(
    "/api/services", tags=["services"], responses=documented(*READ), summary="Services with their latest deployment"
)
def services() -> list[ServiceCard]:
    caller()
    return console().services()


@app.get(
    "/api/incidents",
    tags=["incidents"],
    responses=documented(*READ),
    summary="Open incidents (all recent ones with all=true)",
)
def incidents(
    all: Annotated[bool, Query(description="include acknowledged and resolved incidents")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[Incident]:
    caller()
    return console().incidents(include_resolved=all, limit=limit)


@app.get(
    "/api/incidents/<incident_id>",
    tags=["incidents"],
    responses=documented(*READ_ONE),
    summary="One incident with its timeline",
)
def incident(incident_id: IncidentId) -> Incident:
    caller()
    return console().incident(incident_id)


@app.get("/api/whoami", tags=["console"], responses=documented(*READ), summary="The caller and whether it may write")
def whoami() -> Caller:
    return caller()


# --------------------------------------------------------------------------- writes


@app.post(
    "/api/deployments/<deployment_id>/control/<verb>",
    tags=["control"],
    responses=documented(*WRITE, 404, 502),
    summary="promote, abort, pause, resume, retry, skip_analysis or approve a canary",
)
def control(
    deployment_id: DeploymentId,
    verb: Annotated[Verb, PathParam()],
    body: ReasonBody,
) -> ControlOutcome:
    return console().control_canary(deployment_id, verb, actor(), body.reason)


@app.post(
    "/api/services/<service>/emergency-rollback",
    tags=["services"],
    responses=documented(*WRITE, 502),
    summary="Put a service back on its last known good version",
)
def emergency_rollback(service: ServiceName, body: EmergencyRollbackBody) -> EmergencyRollbackOutcome:
    request = EmergencyRollbackRequest(service=service, actor=actor(), **body.model_dump())
    return console().emergency_rollback(request)


@app.post("/api/incidents/<incident_id>/acknowledge", tags=["incidents"], responses=documented(*WRITE, 404))
def acknowledge(incident_id: IncidentId, body: NotesBody) -> Incident:
    return console().acknowledge(incident_id, actor(), body.notes)


@app.post("/api/incidents/<incident_id>/escalate", tags=["incidents"], responses=documented(*WRITE, 404))
def escalate(incident_id: IncidentId, body: NotesBody) -> EscalationOutcome:
    return console().escalate(incident_id, actor(), body.notes)


@app.post("/api/incidents/<incident_id>/resolve", tags=["incidents"], responses=documented(*WRITE, 404))
def resolve(incident_id: IncidentId, body: ResolveBody) -> Incident:
    return console().resolve(incident_id, actor(), body.notes)


# --------------------------------------------------------------------------- remediation requests
# a remediation step in approval mode asks people (a rollback an incident wants); while one is pending the canary
# holds its promotion (deployguard.workflows.promotion_hold). Read by both functions, answered by the write one.

ApprovalId = Annotated[
    str, PathParam(pattern=RECORD_ID_PATTERN, max_length=128, description="a remediation request's approval id")
]


@functools.cache
def remediation_requests() -> RemediationRequests:
    runtime.on_reset(remediation_requests.cache_clear)
    return RemediationRequests(console().alerts)


class AnswerBody(Body):
    notes: str = Field(min_length=1, max_length=2000, description="why: kept in the audit trail with the answer")


@app.get(
    "/api/remediation-requests",
    tags=["remediation"],
    responses=documented(*READ),
    summary="Remediation requests waiting for people's answer (every deployment), the oldest first",
)
def pending_remediation_requests() -> list[RemediationRequest]:
    caller()
    return remediation_requests().pending()


@app.get(
    "/api/deployments/<deployment_id>/remediation-requests",
    tags=["remediation"],
    responses=documented(*READ_ONE),
    summary="A deployment's remediation requests, pending or answered, the newest first",
    description="At most 20: each with its incident, action, when it was asked and until when it can be answered, "
    "who answered and when, what became of it, and the canary's promotion hold while it is pending.",
)
def deployment_remediation_requests(deployment_id: DeploymentId) -> list[RemediationRequest]:
    caller()
    return remediation_requests().of_deployment(deployment_id)


@app.get(
    "/api/remediation-requests/<approval_id>",
    tags=["remediation"],
    responses=documented(*READ_ONE),
    summary="One remediation request",
)
def remediation_request(approval_id: ApprovalId) -> RemediationRequest:
    caller()
    return remediation_requests().one(approval_id)


ANSWER_DESCRIPTION = (
    "The caller's identity is recorded as who answered (audit trail: remediation_{verb}). 409 when the request "
    "was answered already, expired or was withdrawn (the message says which); 404 for an unknown id."
)


@app.post(
    "/api/remediation-requests/<approval_id>/approve",
    tags=["remediation"],
    responses=documented(*WRITE, 404),
    summary="Approve a remediation request: the action runs (a canary's rollback)",
    description=ANSWER_DESCRIPTION.format(verb="approved"),
)
def approve_remediation(approval_id: ApprovalId, body: AnswerBody) -> RemediationRequest:
    return remediation_requests().decide(approval_id, actor(), True, body.notes)


@app.post(
    "/api/remediation-requests/<approval_id>/reject",
    tags=["remediation"],
    responses=documented(*WRITE, 404),
    summary="Reject a remediation request: the action does not run (a held canary may promote)",
    description=ANSWER_DESCRIPTION.format(verb="rejected"),
)
def reject_remediation(approval_id: ApprovalId, body: AnswerBody) -> RemediationRequest:
    return remediation_requests().decide(approval_id, actor(), False, body.notes)


# --------------------------------------------------------------------------- the document


def openapi_document() -> dict[str, Any]:
    # the OpenAPI document's models (about 45 pydantic models, the console's largest import) only for the document
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    text = app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description=(
            "Watch canaries and take control. Every /api route needs an authorised caller: IAM (SigV4, the "
            "ConsoleReadPolicy / ConsoleWritePolicy managed policies) or a JWT bearer token (write scope for writes)."
        ),
        security_schemes={
            "sigv4": APIKey(name="Authorization", in_=APIKeyIn.header, description="AWS SigV4 (IAM authorisation)"),
            "bearer": HTTPBearer(description="JWT from the configured issuer (ConsoleJwtIssuer)"),
        },
        security=[{"sigv4": []}, {"bearer": []}],
    )
    document: dict[str, Any] = json.loads(text)
    # Powertools documents a 422 on every route (its request validation's): the console answers 400 instead
    for item in document.get("paths", {}).values():
        for operation in item.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        if f'"#/components/schemas/{unused}"' not in json.dumps(document["paths"]):
            schemas.pop(unused, None)
    return document


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(200, content_types.APPLICATION_JSON, json.dumps(openapi_document(), indent=2))


def _refusal(status: int, message: str, field: str | None = None, **headers: str) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message} | ({"field": field} if field else {})
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **headers},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def refuse_before_reading(event: dict[str, Any], access: Access | None = None) -> dict[str, Any] | None:
    """Every /api request needs an identity, every write the permission to write, before its input is read;
    then the request must be this function's (``access``: reads or writes) and within the inbound bounds."""
    context = event.get("requestContext") or {}
    method = str((context.get("http") or {}).get("method", "")).upper()
    path = str(event.get("rawPath", ""))
    if path.startswith("/api/"):
        try:
            who = caller_of(context.get("authorizer"), write_scope())
            if method not in READ_METHODS:
                writer(who)
        except (NotAuthorizedError, ForbiddenError) as exc:
            return _refusal(401 if isinstance(exc, NotAuthorizedError) else 403, str(exc))
    if access == "read" and method not in READ_METHODS:
        return _refusal(405, f"{method} {path}: the console's read function takes no writes "
                        "(POST routes go to ConsoleWriteFunction)", Allow="GET, HEAD")  # fmt: skip
    if access == "write" and (method in READ_METHODS or not path.startswith("/api/")):
        return _refusal(405, f"{method} {path}: the console's write function takes only POST /api/ requests "
                        "(reads go to ConsoleReadFunction)", Allow="POST")  # fmt: skip
    if method not in READ_METHODS and path.startswith("/api/") and event.get("body") and not _json_body(event):
        return _refusal(415, f"{WHAT}: the body must be sent as application/json", "header.content-type")
    try:
        bounded_http_request(event, WHAT)
    except InvalidEventError as exc:
        return _refusal(400, str(exc), exc.field)
    return None


def _json_body(event: dict[str, Any]) -> bool:
    """The request says its body is JSON: ``Content-Type: application/json`` (parameters allowed; a media type
    is case-insensitive, RFC 9110). Its header is then given to the routes in lower case, as Powertools reads it;
    a body sent without the header, or as a form, is not read as JSON (415)."""
    headers = event.get("headers") or {}
    name = next((k for k in headers if str(k).lower() == "content-type"), None)
    value = str(headers.get(name) or "") if name is not None else ""
    media, _, parameters = value.partition(";")
    if media.strip().lower() != content_types.APPLICATION_JSON:
        return False
    event["headers"] = {k: v for k, v in headers.items() if k != name} | {
        "content-type": content_types.APPLICATION_JSON + (f";{parameters}" if parameters else "")
    }
    return True


def handle(event: dict[str, Any], context: LambdaContext, access: Access) -> dict[str, Any]:
    """One API Gateway (payload 2.0) request to the console's ``access`` function."""
    refused = refuse_before_reading(event, access)
    return refused if refused is not None else app.resolve(event, context)
