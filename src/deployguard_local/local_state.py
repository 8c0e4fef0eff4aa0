"""The embedded AWS's state kept on disk, so ``--local`` commands work after the process that made it.

``make demo`` ends by saving what its embedded AWS holds under ``.deployguard/local-state/``
(ignored by git): every DynamoDB table of the stack, every object of its S3 buckets, the
messages waiting in its SQS queues (the notification dead-letter queue among them), the
application's Lambda functions (how many versions each has, and where each alias routes its
traffic), the configuration file it ran with and the simulated clock. ``--local`` commands
start a fresh embedded AWS from ``template.yaml`` and load that state into it, then use it
through the same boto3 calls as a deployed stack::

    with opened() as aws:                   # tables and buckets: what read commands need
        DeploymentReader(DeploymentRepository()).list(...)
    with opened(whole_stack=True) as aws:   # the whole stack: topic, queues, functions, state machines
        ...                                 # act on it (control verbs, dead letters), then
        settle(aws); save(aws, directory)   # let what was started finish, and keep the result

Not kept (moto holds them in memory only, and they end with the process that ran them): Step
Functions executions (a canary's execution and the approval token it waits on), CodeDeploy's
deployments and lifecycle hooks, CloudWatch metrics. :func:`unemulated` names which control
verbs need one of them; a CodeDeploy deployment whose record says it has ended is made again as a
finished one (:func:`restore_codedeploy`), so CodeDeploy answers a verb on it as on AWS.

Layout: ``state.json`` (format, simulated time, configuration, tables, buckets, queues and
Lambda functions), ``dynamodb/<LogicalId>.json`` (items in DynamoDB's typed JSON),
``s3/<LogicalId>/<key>``, ``sqs/<LogicalId>.json`` (message bodies and attributes). A save replaces
the whole directory at once (:func:`save`: written beside it, then swapped in by renames), so a save that
fails half-way leaves the previous state whole.

One command at a time changes a state: a command that will save it holds an exclusive lock
(:func:`locked`: ``fcntl.flock`` on ``.<name>.lock`` beside the directory, which a save replaces) from
before it loads the state until its save ended, so two ``--local`` commands run at once never both
load, change and save (the second one's save would drop the first one's changes). A command that finds
the lock held waits up to :data:`LOCK_WAIT_SECONDS` (``$DEPLOYGUARD_LOCAL_STATE_LOCK_WAIT``), then fails
with one line naming the state directory. Read-only commands take no command lock: they read under a shared
lock (:func:`reading`: ``.<name>.swap.lock``) that a save holds exclusive only while it swaps the directory in
(both renames), so a reader waits for a swap under way, never for a whole command, and reads the previous
state or the new one, whole; a state a killed save left half-swapped is put back under that lock held
exclusive, never while a save is between its renames.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from deployguard.aws import clients
from deployguard.exceptions import DeployGuardError
from deployguard.models import Deployment, DeploymentStatus
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws, _environment, sample_handler

STATE_FORMAT = "deployguard-local-state/1"
STATE_DIR_ENV = "DEPLOYGUARD_LOCAL_STATE"
DEMO_CONFIG = REPO_ROOT / "examples" / "demo.yaml"  # the configuration `make demo` runs with (and saves)


def default_dir() -> Path:
    """``$DEPLOYGUARD_LOCAL_STATE`` or ``.deployguard/local-state`` in the project."""
    return Path(os.environ.get(STATE_DIR_ENV) or REPO_ROOT / ".deployguard" / "local-state")


LOCK_WAIT_ENV = "DEPLOYGUARD_LOCAL_STATE_LOCK_WAIT"
LOCK_WAIT_SECONDS = 30.0  # how long a command waits for another one using the same state (real seconds)
_LOCK_POLL = 0.05
_pause = time.sleep  # how a command waiting for a lock waits (a test sees it wait)
_held = threading.local()  # the lock files this thread holds, exclusive or not (a save inside a command)


class StateLocked(DeployGuardError):
    """Another command holds the state's lock (it is loading, changing or saving that state)."""


def lock_path(directory: Path) -> Path:
    """The state's lock file: beside the directory (a save replaces the directory itself)."""
    directory = Path(directory).resolve()  # as save: the directory a link points to
    return directory.parent / f".{directory.name}.lock"


def _lock_wait() -> float:
    value = os.environ.get(LOCK_WAIT_ENV)
    if not value:
        return LOCK_WAIT_SECONDS
    try:
        return max(0.0, float(value))
    except ValueError as exc:
        raise DeployGuardError(f"${LOCK_WAIT_ENV}={value!r}: not a number of seconds") from exc


@contextlib.contextmanager
def _flock(
    path: Path,
    directory: Path,
    exclusive: bool,
    wait: float | None,
    monotonic: Callable[[], float],
    sleep: Callable[[float], object] | None,
) -> Iterator[Path]:
    """Hold ``fcntl.flock`` on ``path`` (exclusive or shared) while the block runs, reentrant within a thread
    (held exclusive: a shared one is held too). Waits up to ``wait`` seconds, then raises :class:`StateLocked`."""
    held: dict[Path, bool] = _held.__dict__.setdefault("locks", {})
    if path in held and (held[path] or not exclusive):
        yield path
        return
    if path in held:  # shared, wanted exclusive: waiting would wait on this thread itself
        raise DeployGuardError(f"{path}: held shared by this thread, cannot take it exclusive")
    limit = _lock_wait() if wait is None else max(0.0, wait)
    pause = sleep or _pause
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = monotonic() + limit
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - monotonic()
                if left <= 0:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    raise StateLocked(
                        f"the local state {directory} is in use by another deployguard command (pid {holder}); "
                        f"waited {limit:g} s: run this once it ends (${LOCK_WAIT_ENV} sets the wait)"
                    ) from None
                pause(min(_LOCK_POLL, left))
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        held[path] = exclusive
        try:
            yield path
        finally:
            del held[path]
            if exclusive:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(
    directory: Path,
    wait: float | None = None,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] | None = None,
) -> Iterator[Path]:
    """Hold the exclusive lock of the state in ``directory`` while the block runs (reentrant within a thread:
    a save inside a command that holds it). Waits up to ``wait`` seconds (default ``$DEPLOYGUARD_LOCAL_STATE_LOCK_WAIT``
    or :data:`LOCK_WAIT_SECONDS`) for another process (or another open of the lock) to let it go, then raises
    :class:`StateLocked` naming the directory and the holder's pid. Released when the process ends, however."""
    with _flock(lock_path(directory), directory, True, wait, monotonic, sleep) as path:
        yield path


def swap_lock_path(directory: Path) -> Path:
    """The lock a save's swap (and the putting back of an interrupted one) holds exclusive and a reader holds
    shared while it reads the state: beside the directory, as :func:`lock_path`."""
    directory = Path(directory).resolve()
    return directory.parent / f".{directory.name}.swap.lock"


def _half_swapped(directory: Path) -> bool:
    """The state moved aside by a save that has not (yet, or ever: killed) put the new one in its place."""
    directory = directory.resolve()
    return not directory.exists() and any((p / "state.json").exists() for p in _siblings(directory, _OLD))


@contextlib.contextmanager
def reading(
    directory: Path,
    wait: float | None = None,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] | None = None,
) -> Iterator[None]:
    """Read the state in ``directory`` while the block runs, whole: under the shared swap lock
    (:func:`swap_lock_path`), which a save holds exclusive from before it moves the state aside until the new
    one is in its place, so a reader waits for a swap under way (never the whole command that saves) and
    a save's swap waits for the readers. A state a killed save left half-swapped is put back first, under the
    exclusive swap lock (never while a save is between its renames). Reentrant within a thread."""
    directory = Path(directory)
    if not directory.exists() and not _half_swapped(directory):
        yield  # no state here to read (the caller says so): no lock file left beside a directory that is not there
        return
    path = swap_lock_path(directory)
    if path in _held.__dict__.get("locks", {}):  # this thread reads inside its own read or swap: nothing to recover
        yield
        return
    recovered = False
    while True:
        with _flock(path, directory, False, wait, monotonic, sleep):
            if recovered or not _half_swapped(directory):
                yield
                return
        with _flock(path, directory, True, wait, monotonic, sleep):
            _recover(directory)
        recovered = True


def _tables(aws: EmbeddedAws) -> dict[str, str]:
    return {logical: aws.ref(logical) for logical in aws.stack.of_type("AWS::DynamoDB::Table")}


def _buckets(aws: EmbeddedAws) -> dict[str, str]:
    buckets = aws.stack.of_type("AWS::S3::Bucket")
    return {logical: aws.ref(logical) for logical in buckets if logical in aws.stack.physical}


def _queues(aws: EmbeddedAws) -> dict[str, str]:
    """The template's queues (logical id -> URL); none on a storage-only embedded AWS."""
    queues = aws.stack.of_type("AWS::SQS::Queue")
    return {logical: aws.ref(logical) for logical in queues if logical in aws.stack.physical}


def _messages(queue_url: str) -> list[dict[str, Any]]:
    """Every message waiting in a queue (body and attributes), left in it as it was."""
    sqs = clients.client("sqs")
    found: dict[str, dict[str, Any]] = {}
    handles: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            handles.append(message["ReceiptHandle"])
            kept: dict[str, Any] = {"Body": message["Body"]}
            if message.get("MessageAttributes"):
                kept["MessageAttributes"] = message["MessageAttributes"]
            found.setdefault(message["MessageId"], kept)
    for handle in handles:  # visible again at once: saving takes nothing away
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(found.values())


def _functions(aws: EmbeddedAws) -> dict[str, Any]:
    """The application's Lambda functions (not the stack's own): how many versions each has, and where each
    alias routes its traffic (``{"versions": 2, "aliases": {"live": {"version": "1", "weights": {"2": 0.1}}}}``)."""
    if aws.storage_only:
        return {}
    own = {aws.ref(logical) for logical in aws.stack.of_type("AWS::Serverless::Function")}
    lam = clients.client("lambda")
    found: dict[str, Any] = {}
    for page in lam.get_paginator("list_functions").paginate():
        for function in page["Functions"]:
            name = function["FunctionName"]
            if name in own:
                continue
            versions = [int(v["Version"]) for p in lam.get_paginator("list_versions_by_function").paginate(
                FunctionName=name) for v in p["Versions"] if v["Version"].isdigit()]  # fmt: skip
            aliases = {
                a["Name"]: {"version": a["FunctionVersion"],
                            "weights": a.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})}
                for p in lam.get_paginator("list_aliases").paginate(FunctionName=name) for a in p["Aliases"]
            }  # fmt: skip
            if versions and aliases:
                found[name] = {"versions": max(versions), "aliases": aliases}
    return found


def _relative(path: Path | None) -> str | None:
    if path is None:
        return None
    path = Path(path).resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


_KEPT = ("state.json", "dynamodb", "s3", "sqs")  # what a saved state holds; nothing else is replaced by a save
_NEW, _OLD = "new", "old"  # the siblings a save uses: `.<name>.new-<id>` being written, `.<name>.old-<id>` replaced


def _siblings(directory: Path, kind: str) -> list[Path]:
    """The save's leftovers of ``kind`` beside ``directory`` (a save in progress, or one a crash interrupted)."""
    if not directory.parent.is_dir():
        return []
    return sorted(p for p in directory.parent.glob(f".{directory.name}.{kind}-*") if p.is_dir())


def _recover(directory: Path) -> None:
    """Put back the previous state if a save was interrupted between its two renames (the state moved aside, the
    new one not yet in its place): an interrupted save leaves the state it replaced. Only under the exclusive
    swap lock (:func:`reading`, :func:`_save`): a save under way between its renames holds it."""
    directory = directory.resolve()  # a link: the directory it points to was swapped
    if directory.exists():
        return
    replaced = [p for p in _siblings(directory, _OLD) if (p / "state.json").exists()]
    if replaced:
        newest = max(replaced, key=lambda p: p.stat().st_mtime)
        with contextlib.suppress(FileNotFoundError, FileExistsError, OSError):  # another process may do it too
            newest.rename(directory)


def _write(path: Path, data: bytes) -> None:
    """One file of a state being saved, on disk (fsync) before the state is swapped in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sibling(directory: Path, kind: str) -> Path:
    """A new, empty sibling directory ``.<name>.<kind>-<id>`` (created with the usual permissions)."""
    while True:
        path = directory.parent / f".{directory.name}.{kind}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def save(aws: EmbeddedAws, directory: Path | None = None) -> Path:
    """Write the tables, buckets, queues, application functions, configuration and clock of ``aws`` to
    ``directory``, replacing what was there at once: everything is written into a sibling directory
    (``.<name>.new-<id>``), then the saved state is moved aside (``.<name>.old-<id>``), the new one renamed
    into its place and the old one removed. A save that fails (a full disk) or is interrupted leaves the
    previous state as it was (one killed between the two renames is put back by the next read or save);
    a crashed save's leftovers are removed by the next save. A directory holding anything else than a saved
    state is refused (the swap would delete it). Under the state's lock (:func:`locked`): a command that loaded
    the state it saves holds it from before the load."""
    directory = Path(directory or default_dir())
    if directory.is_symlink():  # swap the directory it points to, leave the link
        directory = directory.resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    with locked(directory):  # held already by a command that loaded the state it saves (reentrant)
        return _save(aws, directory)


def _save(aws: EmbeddedAws, directory: Path) -> Path:
    with _flock(swap_lock_path(directory), directory, True, None, time.monotonic, None):
        _recover(directory)
    if directory.exists():
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in _KEPT)
        if foreign:
            raise DeployGuardError(
                f"{directory} holds {', '.join(foreign)}, which is not part of a saved local state: not replacing "
                "it (move them away, or save elsewhere with --state-dir / $DEPLOYGUARD_LOCAL_STATE)"
            )
    for leftover in _siblings(directory, _NEW) + _siblings(directory, _OLD):  # of a save that crashed
        shutil.rmtree(leftover, ignore_errors=True)
    staging = _sibling(directory, _NEW)
    try:
        _write_state(aws, directory, staging)
        _swap(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the swap succeeded
    return directory


def _write_state(aws: EmbeddedAws, previous: Path, directory: Path) -> None:
    """Write the state of ``aws`` into the empty ``directory``, ``state.json`` last (``previous``: the state
    it replaces, for what a storage-only embedded AWS does not hold)."""
    dynamodb = clients.client("dynamodb")
    (directory / "dynamodb").mkdir()
    for logical, name in _tables(aws).items():
        items: list[dict[str, Any]] = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=name):  # a snapshot: the whole table
            items += page["Items"]
        _write(directory / "dynamodb" / f"{logical}.json", json.dumps(items).encode())
    s3 = clients.client("s3")
    for logical, bucket in _buckets(aws).items():
        root = directory / "s3" / logical
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                _write(root / obj["Key"], s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    queues = _queues(aws)
    for logical, url in queues.items():
        _write(directory / "sqs" / f"{logical}.json", json.dumps(_messages(url)).encode())
    manifest: dict[str, Any] = {
        "format": STATE_FORMAT,
        "simulated_now": aws.clock().isoformat() if aws.clock is not None else None,
        "config_file": _relative(aws.config_file),
        "tables": _tables(aws),
        "buckets": _buckets(aws),
        "queues": queues,
    }
    if not aws.storage_only:
        manifest["functions"] = _functions(aws)
    elif (previous / "state.json").exists():  # no queues, Lambda nor configuration here: keep what was saved
        kept = read_manifest(previous)
        for key in ("config_file", "queues", "functions"):
            if key in kept:
                manifest[key] = kept[key]
            else:
                manifest.pop(key, None)
        if (previous / "sqs").is_dir():  # the queues' messages, as they were saved
            shutil.copytree(previous / "sqs", directory / "sqs")
    _write(directory / "state.json", json.dumps(manifest, indent=2).encode())
    _fsync_dir(directory)


def _swap(staging: Path, directory: Path) -> None:
    """Put the fully written ``staging`` in the place of ``directory``: the old state moved aside first, kept
    until the new one is in place, then removed. Under the exclusive swap lock: a reader waits for it to end."""
    with _flock(swap_lock_path(directory), directory, True, None, time.monotonic, None):
        _swapped(staging, directory)


def _swapped(staging: Path, directory: Path) -> None:
    replaced = None
    if directory.exists():
        replaced = _sibling(directory, _OLD)
        directory.rename(replaced)  # onto the empty directory just made: a unique name, taken atomically
    try:
        staging.rename(directory)
    except BaseException:
        if replaced is not None:
            # the failure raised is the rename's; one that also fails putting back leaves the previous state
            # beside the directory, put back by the next read or save (:func:`_recover`)
            with contextlib.suppress(OSError):
                replaced.rename(directory)
        raise
    _fsync_dir(directory.parent)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)


def report_path(directory: Path, bucket_logical_id: str, key: str) -> Path:
    """Where an object of a bucket is kept on disk."""
    return directory / "s3" / bucket_logical_id / key


def load(aws: EmbeddedAws, directory: Path) -> None:
    """Put a saved state's tables, buckets, queued messages and clock into a freshly started embedded AWS
    (the application's functions: :func:`restore_functions`). Under :func:`reading`: a whole saved state."""
    with reading(directory):
        _load(aws, directory)


def _load(aws: EmbeddedAws, directory: Path) -> None:
    manifest = read_manifest(directory)
    dynamodb = clients.client("dynamodb")
    for logical, name in _tables(aws).items():
        path = directory / "dynamodb" / f"{logical}.json"
        if not path.exists():
            continue
        items = json.loads(path.read_text(encoding="utf-8"))
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            dynamodb.batch_write_item(RequestItems={name: batch})
    s3 = clients.client("s3")
    for logical, bucket in _buckets(aws).items():
        root = directory / "s3" / logical
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                s3.put_object(Bucket=bucket, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())
    sqs = clients.client("sqs")
    for logical, url in _queues(aws).items():
        path = directory / "sqs" / f"{logical}.json"
        for message in json.loads(path.read_text(encoding="utf-8")) if path.exists() else []:
            sqs.send_message(QueueUrl=url, MessageBody=message["Body"],
                             MessageAttributes=message.get("MessageAttributes", {}))  # fmt: skip
    if aws.clock is not None and manifest.get("simulated_now"):
        saved = datetime.fromisoformat(manifest["simulated_now"])
        aws.clock.advance(max(0.0, (saved - aws.clock()).total_seconds()))


def restore_functions(aws: EmbeddedAws, directory: Path) -> list[str]:
    """Recreate the application's Lambda functions the saved state names, each alias routing as it was
    saved. A state saved before functions were kept has them rebuilt from the deployment history
    (:func:`functions_from_history`)."""
    saved = read_manifest(directory).get("functions")
    if saved is None:
        return functions_from_history(aws)
    lam = clients.client("lambda")
    for name, function in saved.items():
        aliases: dict[str, Any] = function["aliases"]
        first = next(iter(aliases))
        aws.deploy_sample_function(name, first, sample_handler, versions=int(function["versions"]))
        for alias, route in aliases.items():
            routing = {"RoutingConfig": {"AdditionalVersionWeights": route["weights"]}} if route["weights"] else {}
            change = lam.update_alias if alias == first else lam.create_alias
            change(FunctionName=name, Name=alias, FunctionVersion=route["version"], **routing)
    return sorted(saved)


def functions_from_history(aws: EmbeddedAws) -> list[str]:
    """Recreate the Lambda functions the deployments of the loaded tables name, with their versions and the
    alias where the history left it (the newest deployment's new version if it was promoted, else its stable
    one): for a state saved before functions were kept."""
    from deployguard.models import LambdaTarget
    from deployguard.readmodels import DeploymentQuery, DeploymentReader
    from deployguard.storage.repository import DeploymentRepository

    newest: dict[str, tuple[LambdaTarget, bool]] = {}
    versions: dict[str, int] = {}
    items = DeploymentReader(DeploymentRepository()).page(DeploymentQuery(limit=500)).items
    for deployment in sorted(items, key=lambda d: d.started_at):
        target = deployment.target
        if not isinstance(target, LambdaTarget) or not (target.stable_version + target.new_version).isdigit():
            continue
        newest[target.function_name] = (target, deployment.decision == "promoted")
        versions[target.function_name] = max(
            versions.get(target.function_name, 0), int(target.stable_version), int(target.new_version)
        )
    for name, (target, promoted) in newest.items():
        aws.deploy_sample_function(name, target.alias, sample_handler, versions=versions[name])
        live = target.new_version if promoted else target.stable_version
        clients.client("lambda").update_alias(FunctionName=name, Name=target.alias, FunctionVersion=live)
    return sorted(newest)


def saved_config(directory: Path) -> Path | None:
    """The configuration file the saved state's stack ran with (a state saved before it was kept: the
    demo's, which made it)."""
    manifest = read_manifest(directory)
    if "config_file" not in manifest:
        return DEMO_CONFIG
    if manifest["config_file"] is None:
        return None
    path = Path(manifest["config_file"])
    path = path if path.is_absolute() else REPO_ROOT / path
    if not path.exists():
        raise DeployGuardError(f"{directory}: saved with the configuration {path}, which is gone (pass --config FILE)")
    return path


def present(directory: Path) -> bool:
    """Whether a saved state is in ``directory`` (one a save is swapping in: once it is in place)."""
    with reading(directory):
        return (directory / "state.json").exists()


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "state.json"
    with reading(directory):
        if not path.exists():
            raise DeployGuardError(f"no local state in {directory}: run `make demo` first (it saves its state there)")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != STATE_FORMAT:
        found = manifest.get("format")
        raise DeployGuardError(f"{path}: format {found!r} is not {STATE_FORMAT}; run `make demo` again")
    return dict(manifest)


@contextlib.contextmanager
def opened(
    directory: Path | None = None, *, whole_stack: bool = False, config_file: str | Path | None = None
) -> Iterator[EmbeddedAws]:
    """An embedded AWS holding the saved state (use it through boto3 as a deployed stack).

    ``whole_stack``: every resource of the template (topic, queues, the stack's functions subscribed
    and scheduled as deployed, state machines) and the application's functions with their aliases,
    configured with ``config_file`` (default: the configuration the state was saved with); the
    channels of the demo's configuration (``DEMO_<KIND>_URL``) answer on local receivers, as in the
    demo. Otherwise tables and buckets only: what read commands need.

    Loaded under :func:`reading` from its manifest to its last file (one save's state, whole); the block runs
    after it is let go (a save inside it swaps)."""
    directory = directory or default_dir()
    from deployguard_local.receivers import local_receivers

    with contextlib.ExitStack() as stack:
        with reading(directory):
            read_manifest(directory)
            if not whole_stack:
                aws = stack.enter_context(EmbeddedAws(storage_only=True))
                load(aws, directory)
            else:
                config = Path(config_file) if config_file else saved_config(directory)
                receivers = stack.enter_context(local_receivers(echo=None))
                stack.enter_context(_environment({f"DEMO_{kind.upper()}_URL": url
                                                  for kind, url in receivers.urls.items()}))  # fmt: skip
                aws = stack.enter_context(EmbeddedAws(config_file=config))
                load(aws, directory)
                restore_functions(aws, directory)
        yield aws


SETTLE_TIMEOUT = 120.0  # real seconds an execution a command started may take to end
SETTLE_POLL_MAX = 0.5  # the longest pause between two looks at a running execution


def settle(
    aws: EmbeddedAws,
    timeout: float = SETTLE_TIMEOUT,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> list[dict[str, Any]]:
    """Let what a command started finish before its state is saved (nothing of it outlives the process):
    Step Functions executions run to their end on the simulated clock (waiting at most ``timeout`` seconds of
    ``monotonic``, looking again after pauses of ``sleep`` growing from 20 ms to :data:`SETTLE_POLL_MAX`: the
    caller stops one still running then, and saves nothing), and asynchronous invocations (the topic's
    deliveries) are drained. Returns DescribeExecution of each execution that ran."""
    sfn = clients.client("stepfunctions")
    deadline = monotonic() + timeout
    ran: list[dict[str, Any]] = []
    for machine in sfn.list_state_machines()["stateMachines"]:
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine["stateMachineArn"])
        for execution in (e for page in pages for e in page["executions"]):
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            pause = 0.02
            while described["status"] == "RUNNING" and (left := deadline - monotonic()) > 0:
                sleep(min(pause, left))
                pause = min(2 * pause, SETTLE_POLL_MAX)
                described = sfn.describe_execution(executionArn=execution["executionArn"])
            ran.append(described)
    aws.invoker.drain()
    return ran


def what_ran(execution: dict[str, Any]) -> str:
    """One line about an execution :func:`settle` waited for."""
    if execution["status"] == "RUNNING":
        return f"execution {execution['name']} still ran after {SETTLE_TIMEOUT:g} s"
    return f"execution {execution['name']} ran to its end on the simulated clock ({execution['status']})"


# ---------------------------------------------------------------------------- what is not kept

_CODEDEPLOY_CALLS = {"abort": "StopDeployment", "promote": "ContinueDeployment"}
_FLAG_VERBS = ("promote", "pause", "resume", "skip_analysis")


def unemulated(deployment: Deployment, verb: str) -> str | None:
    """Why ``verb`` cannot act on ``deployment`` in the saved local state (None: it can): what it needs
    is one of the things not kept (a CodeDeploy deployment still running, a Step Functions execution's task
    token). A CodeDeploy deployment the record says has ended is not refused: CodeDeploy's answer for it is
    known (it has completed), and :func:`restore_codedeploy` gives it."""
    call = _CODEDEPLOY_CALLS.get(verb)
    if deployment.driver == "codedeploy" and call and not deployment.status.is_terminal:
        return (
            f"{verb} of CodeDeploy-driven deployment {deployment.deployment_id} is CodeDeploy's {call} on "
            f"{deployment.codedeploy_deployment_id or '(none recorded)'}, which the record leaves "
            f"{deployment.status.value}, and the saved local state has no CodeDeploy deployments (it keeps DynamoDB, "
            "S3, SQS and the Lambda aliases; CodeDeploy's deployments ended with the demo's process): use it on a "
            "deployed stack (--stack NAME)"
        )
    if verb in ("approve", "promote", "abort") and deployment.control.approval_token:
        return (
            f"{verb} of {deployment.deployment_id} answers the approval task token of its canary's Step Functions "
            "execution, and the saved local state has no Step Functions executions (they end with the process that "
            "ran them): nothing waits on that token here"
        )
    return None


_CODEDEPLOY_ENDED: dict[DeploymentStatus, Literal["Succeeded", "Failed", "Stopped"]] = {
    DeploymentStatus.SUCCEEDED: "Succeeded",
    DeploymentStatus.STOPPED: "Stopped",
}


def restore_codedeploy(deployment: Deployment) -> bool:
    """The CodeDeploy deployment of a CodeDeploy-driven record that says it has ended, back in the embedded
    CodeDeploy as a finished deployment (id, application and group as recorded), so a control verb gets
    CodeDeploy's own answer, as on AWS: StopDeployment and ContinueDeployment refuse it as already completed.
    CodeDeploy's exact final status is not kept: Succeeded for a succeeded record, Stopped for a stopped one,
    else Failed (either refuses the same). False (nothing made) for any other record, or one already there."""
    from deployguard.models import EcsTarget
    from deployguard_local.codedeploy import restore_finished_deployment

    cd_id = deployment.codedeploy_deployment_id
    if deployment.driver != "codedeploy" or not cd_id or not deployment.status.is_terminal:
        return False
    codedeploy = clients.client("codedeploy")
    try:
        codedeploy.get_deployment(deploymentId=cd_id)
        return False  # made already (by an earlier verb of this process)
    except codedeploy.exceptions.DeploymentDoesNotExistException:
        pass
    restore_finished_deployment(
        cd_id,
        deployment.codedeploy_application or deployment.service,
        deployment.codedeploy_group or deployment.environment,
        compute_platform="ECS" if isinstance(deployment.target, EcsTarget) else "Lambda",
        status=_CODEDEPLOY_ENDED.get(deployment.status, "Failed"),
        created=deployment.started_at,
        completed=deployment.ended_at or deployment.started_at,
    )
    return True


def unhonoured(deployment: Deployment, verb: str) -> str | None:
    """What a flag verb that changed a Step Functions canary of the saved state leaves undone locally."""
    if deployment.driver == "codedeploy" or deployment.status.is_terminal or verb not in _FLAG_VERBS:
        return None
    return (
        f"{verb} is recorded on {deployment.deployment_id}; its canary's execution is not in the saved local "
        "state (Step Functions executions end with the process that ran them), so nothing here moves its "
        "traffic: on AWS the execution honours it at its next task"
    )
