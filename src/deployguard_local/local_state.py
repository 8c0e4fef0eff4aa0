"""The embedded AWS's state kept on disk, so read commands work after the process that made it.

``make demo`` ends by saving what its embedded AWS holds (every DynamoDB table of the stack,
every object of its S3 buckets, and the simulated clock) under ``.deployguard/local-state/``
(ignored by git). ``--local`` commands start a fresh embedded AWS from ``template.yaml`` and
load that state into it, then read it through the same boto3 calls as against a deployed
stack::

    with opened() as aws:                   # EmbeddedAws with the demo's state
        DeploymentReader(DeploymentRepository()).list(...)

Layout: ``state.json`` (format, saved-at, simulated time, tables and buckets),
``dynamodb/<LogicalId>.json`` (items in DynamoDB's typed JSON), ``s3/<LogicalId>/<key>``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from deployguard.aws import clients
from deployguard.exceptions import DeployGuardError
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws

STATE_FORMAT = "deployguard-local-state/1"
STATE_DIR_ENV = "DEPLOYGUARD_LOCAL_STATE"


def default_dir() -> Path:
    """``$DEPLOYGUARD_LOCAL_STATE`` or ``.deployguard/local-state`` in the project."""
    return Path(os.environ.get(STATE_DIR_ENV) or REPO_ROOT / ".deployguard" / "local-state")


def _tables(aws: EmbeddedAws) -> dict[str, str]:
    return {logical: aws.ref(logical) for logical in aws.stack.of_type("AWS::DynamoDB::Table")}


def _buckets(aws: EmbeddedAws) -> dict[str, str]:
    buckets = aws.stack.of_type("AWS::S3::Bucket")
    return {logical: aws.ref(logical) for logical in buckets if logical in aws.stack.physical}


def save(aws: EmbeddedAws, directory: Path | None = None) -> Path:
    """Write the tables, buckets and clock of ``aws`` to ``directory`` (replacing what was there)."""
    directory = directory or default_dir()
    (directory / "dynamodb").mkdir(parents=True, exist_ok=True)
    dynamodb = clients.client("dynamodb")
    for logical, name in _tables(aws).items():
        items: list[dict[str, Any]] = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=name):  # a snapshot: the whole table
            items += page["Items"]
        (directory / "dynamodb" / f"{logical}.json").write_text(json.dumps(items), encoding="utf-8")
    s3 = clients.client("s3")
    for logical, bucket in _buckets(aws).items():
        root = directory / "s3" / logical
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                path = root / obj["Key"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    manifest = {
        "format": STATE_FORMAT,
        "simulated_now": aws.clock().isoformat() if aws.clock is not None else None,
        "tables": _tables(aws),
        "buckets": _buckets(aws),
    }
    (directory / "state.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory


def report_path(directory: Path, bucket_logical_id: str, key: str) -> Path:
    """Where an object of a bucket is kept on disk."""
    return directory / "s3" / bucket_logical_id / key


def load(aws: EmbeddedAws, directory: Path) -> None:
    """Put a saved state into a freshly started embedded AWS."""
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
    if aws.clock is not None and manifest.get("simulated_now"):
        saved = datetime.fromisoformat(manifest["simulated_now"])
        aws.clock.advance(max(0.0, (saved - aws.clock()).total_seconds()))


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "state.json"
    if not path.exists():
        raise DeployGuardError(f"no local state in {directory}: run `make demo` first (it saves its state there)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != STATE_FORMAT:
        found = manifest.get("format")
        raise DeployGuardError(f"{path}: format {found!r} is not {STATE_FORMAT}; run `make demo` again")
    return dict(manifest)


@contextlib.contextmanager
def opened(directory: Path | None = None) -> Iterator[EmbeddedAws]:
    """An embedded AWS holding the saved state (read it through boto3 as a deployed stack)."""
    directory = directory or default_dir()
    read_manifest(directory)
    with EmbeddedAws(storage_only=True) as aws:
        load(aws, directory)
        yield aws
