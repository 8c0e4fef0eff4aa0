"""``local_state.save`` replaces the saved state at once: a save that fails half-way (a full disk) or a process
killed in the middle of one leaves the previous state whole, and ``read_manifest`` / ``load`` / ``opened`` give it
exactly; a crash's leftovers are ignored by readers and removed by the next save; a normal save loads back as it
was saved. States made on the embedded AWS (whole stack, as ``control --local`` opens it), saved by the real code;
the kill is a real one (``os._exit`` in a child process at a chosen point of the save).

A state saved by the first format (tables, buckets and clock only) still opens, for ``control --local`` and
``serve --local``: the demo's configuration, the application's aliases rebuilt from the deployment history."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from local_control import BY, alias, local, reopened, run

import deployguard
import deployguard_local
from deployguard.aws import clients
from deployguard.exceptions import DeployGuardError
from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import cli, local_state
from deployguard_local.console_server import demo_console
from deployguard_local.emulator import EmbeddedAws, sample_handler

REPORT_KEY = "reports/dep-saved.html"


def _deployment(deployment_id: str) -> Deployment:
    target = LambdaTarget(function_name="orders-api", alias="live", stable_version="1", new_version="2")
    return Deployment(deployment_id=deployment_id, service="orders-api", version="2", environment="production",
                      target=target, status=DeploymentStatus.IN_PROGRESS, canary_weight=0.1)  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved state (whole stack, the demo's configuration): a deployment, a report in the ReportsBucket, a dead
    letter waiting in the NotificationDeadLetterQueue, and ``orders-api:live`` routing 10% to version 2."""
    directory = tmp_path_factory.mktemp("saved") / "state"
    with EmbeddedAws(config_file=local_state.DEMO_CONFIG) as aws:
        DeploymentRepository().create_deployment(_deployment("dep-saved"))
        clients.client("s3").put_object(Bucket=aws.ref("ReportsBucket"), Key=REPORT_KEY, Body=b"<html>saved</html>")
        clients.client("sqs").send_message(QueueUrl=aws.ref("NotificationDeadLetterQueue"), MessageBody='{"saved": 1}')
        aws.deploy_sample_function("orders-api", "live", sample_handler)
        clients.client("lambda").update_alias(FunctionName="orders-api", Name="live", FunctionVersion="1",
                                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})  # fmt: skip
        assert aws.clock is not None
        aws.clock.advance(3600)
        local_state.save(aws, directory)
    return directory


@pytest.fixture
def state(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "state"))


def files(directory: Path) -> dict[str, bytes]:
    """Every file of a saved state, byte for byte."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def unordered(saved: dict[str, bytes]) -> dict[str, Any]:
    """A saved state's files with the lists of its JSON files (items, messages) in a set order: a scan of a table
    loaded from a file need not give its items in the file's order."""
    found: dict[str, Any] = {}
    for name, data in saved.items():
        parsed = json.loads(data) if name.endswith(".json") else data
        found[name] = sorted(json.dumps(i, sort_keys=True) for i in parsed) if isinstance(parsed, list) else parsed
    return found


def leftovers(directory: Path) -> list[str]:
    """What a save left beside the state (its lock files, kept for the next command, are not leftovers)."""
    locks = {local_state.lock_path(directory).name, local_state.swap_lock_path(directory).name}
    siblings = (p.name for p in directory.parent.iterdir() if p.name.startswith(f".{directory.name}."))
    return sorted(name for name in siblings if name not in locks)


def contents(aws: EmbeddedAws) -> dict[str, Any]:
    """What an embedded AWS holds of a saved state's kinds (order-free)."""
    items = clients.client("dynamodb").scan(TableName=aws.ref("DeploymentsTable"))["Items"]
    s3 = clients.client("s3")
    bucket = aws.ref("ReportsBucket")
    objects = {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
               for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}  # fmt: skip
    found: dict[str, Any] = {"items": sorted(json.dumps(i, sort_keys=True) for i in items), "objects": objects,
                             "now": aws.clock().isoformat() if aws.clock else None}  # fmt: skip
    if not aws.storage_only:
        dlq = clients.client("sqs").receive_message(QueueUrl=aws.ref("NotificationDeadLetterQueue"),
                                                    MaxNumberOfMessages=10, VisibilityTimeout=0)  # fmt: skip
        found["dead_letters"] = sorted(m["Body"] for m in dlq.get("Messages", []))
        live = clients.client("lambda").get_alias(FunctionName="orders-api", Name="live")
        found["alias"] = (live["FunctionVersion"], live.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}))
    return found


def test_a_saved_state_loads_back_as_it_was_saved(saved: Path, tmp_path: Path) -> None:
    with local_state.opened(saved, whole_stack=True) as aws:
        loaded = contents(aws)
        assert aws.config_file == local_state.DEMO_CONFIG  # the configuration it was saved with
        again = local_state.save(aws, tmp_path / "again")
    assert loaded["items"] == unordered(files(saved))["dynamodb/DeploymentsTable.json"]  # the saved items, all
    assert "DEP#dep-saved" in {json.loads(i)["pk"]["S"] for i in loaded["items"]}
    assert loaded["objects"] == {REPORT_KEY: b"<html>saved</html>"}
    assert loaded["dead_letters"] == ['{"saved": 1}'] and loaded["alias"] == ("1", {"2": 0.1})
    assert loaded["now"] == "2026-01-01T13:00:00+00:00"  # the simulated clock, an hour on
    assert unordered(files(again)) == unordered(files(saved))  # saved again from what was loaded: the same state
    assert leftovers(again) == []  # the save's sibling directories are gone


def test_a_save_failing_half_way_leaves_the_previous_state_exactly(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, manifest = files(state), local_state.read_manifest(state)
    written: list[Path] = []
    write = local_state._write

    def disk_full_at_the_third_file(path: Path, data: bytes) -> None:
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, data)
        written.append(path)

    with local_state.opened(state, whole_stack=True) as aws:
        old = contents(aws)
        DeploymentRepository().create_deployment(_deployment("dep-new"))
        s3 = clients.client("s3")
        s3.put_object(Bucket=aws.ref("ReportsBucket"), Key=REPORT_KEY, Body=b"<html>new</html>")
        s3.put_object(Bucket=aws.ref("ReportsBucket"), Key="reports/dep-new.html", Body=b"<html>new</html>")
        clients.client("lambda").update_alias(FunctionName="orders-api", Name="live", FunctionVersion="2",
                                              RoutingConfig={"AdditionalVersionWeights": {}})  # fmt: skip
        assert aws.clock is not None
        aws.clock.advance(60)
        monkeypatch.setattr(local_state, "_write", disk_full_at_the_third_file)
        with pytest.raises(OSError, match="No space left"):
            local_state.save(aws, state)
        assert len(written) == 2 and all(state not in p.parents for p in written)  # written beside, not in it
        assert files(state) == before and leftovers(state) == []  # nothing of the failed save remains
        assert local_state.read_manifest(state) == manifest
        monkeypatch.undo()
        local_state.save(aws, state)  # the same save, with room on the disk: the new state, whole
    with local_state.opened(state) as fresh:  # load: the new state, not a mix
        now = contents(fresh)
    assert now["objects"] == {REPORT_KEY: b"<html>new</html>", "reports/dep-new.html": b"<html>new</html>"}
    assert "DEP#dep-new" in {json.loads(i)["pk"]["S"] for i in now["items"]}
    assert now["now"] == "2026-01-01T13:01:00+00:00" and old["now"] == "2026-01-01T13:00:00+00:00"
    assert local_state.read_manifest(state)["functions"]["orders-api"]["aliases"]["live"] == {
        "version": "2", "weights": {}}  # fmt: skip


CRASHING_SAVE = """
import os, pathlib, sys
from deployguard.aws import clients
from deployguard_local import local_state
from deployguard_local.console_server import demo_console
directory, when = pathlib.Path(sys.argv[1]), sys.argv[2]
with local_state.opened(directory) as aws:  # storage only, as `incidents ack --local` saves
    clients.client("s3").put_object(Bucket=aws.ref("ReportsBucket"), Key="reports/crash.html", Body=b"new")
    if when == "writing":  # killed while the new state is being written (its second file)
        write, count = local_state._write, []
        def dying(path, data):
            if count:
                os._exit(9)
            count.append(path)
            write(path, data)
        local_state._write = dying
    else:  # killed between the two renames: the old state moved aside, the new one not yet in its place
        rename = pathlib.Path.rename
        def dying(self, target):
            if self.name.startswith(f".{directory.name}.new-"):
                os._exit(9)
            return rename(self, target)
        pathlib.Path.rename = dying
    local_state.save(aws, directory)
sys.exit(0)
"""


def crash_saving(directory: Path, when: str) -> None:
    """A process that opens the state, changes it and is killed (no handler runs) at ``when`` of its save."""
    paths = [str(Path(m.__file__).parents[1]) for m in (deployguard, deployguard_local)]  # type: ignore[arg-type]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CRASHING_SAVE), str(directory), when], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 9, done.stderr


@pytest.mark.parametrize("when", ["writing", "swapping"])
def test_a_killed_save_leaves_the_previous_state_and_the_next_save_cleans_up(state: Path, when: str) -> None:
    before, manifest = files(state), local_state.read_manifest(state)
    crash_saving(state, when)
    left = leftovers(state)
    if when == "writing":
        assert [n.split("-")[0] for n in left] == [".state.new"] and files(state) == before
    else:  # the state moved aside, the new one complete beside it
        assert not state.exists() and sorted(n.split("-")[0] for n in left) == [".state.new", ".state.old"]
    assert local_state.read_manifest(state) == manifest  # a reader finds the previous state (put back) ...
    assert files(state) == before
    with local_state.opened(state) as aws:  # ... and loads it, not the crashed save's
        assert "reports/crash.html" not in contents(aws)["objects"]
        local_state.save(aws, state)  # the next save (storage only) removes the crash's leftovers
    assert leftovers(state) == []
    assert unordered(files(state)) == unordered(before)  # what it does not hold (queues, functions) is kept


def test_a_directory_holding_something_else_is_not_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine", encoding="utf-8")
    with EmbeddedAws(storage_only=True) as aws, pytest.raises(DeployGuardError, match=r"notes\.txt"):
        local_state.save(aws, directory)
    assert files(directory) == {"notes.txt": b"mine"} and leftovers(directory) == []


# ---------------------------------------------------------------------------- a state saved by the first format

OLD_KEYS = {"format", "simulated_now", "tables", "buckets"}  # what save() wrote before queues, functions, config


@pytest.fixture
def old_state(saved: Path, tmp_path: Path) -> Path:
    """The saved state as the first ``save`` (b2a13c2) wrote it: the same STATE_FORMAT, tables, buckets and clock
    only (no ``config_file``, ``queues`` nor ``functions``, no ``sqs/``): a real save with what it did not write
    taken away."""
    directory = Path(shutil.copytree(saved, tmp_path / "old"))
    manifest = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    for key in ("config_file", "queues", "functions"):
        del manifest[key]
    assert set(manifest) == OLD_KEYS and manifest["format"] == local_state.STATE_FORMAT
    (directory / "state.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    shutil.rmtree(directory / "sqs")
    return directory


def test_an_old_state_opens_with_its_aliases_from_the_history_and_the_demos_configuration(old_state: Path) -> None:
    assert local_state.saved_config(old_state) == local_state.DEMO_CONFIG  # the demo made it (none was kept)
    with local_state.opened(old_state, whole_stack=True) as aws:
        assert aws.config_file == local_state.DEMO_CONFIG
        found = contents(aws)
        assert found["dead_letters"] == []  # none kept: the queues start empty
        # dep-saved (1 -> 2, in flight) is the newest deployment of orders-api, not promoted: live at its stable
        # version (the 10% the canary had is not in the history's last word), both versions published
        assert found["alias"] == ("1", {})
        versions = clients.client("lambda").list_versions_by_function(FunctionName="orders-api")["Versions"]
        assert sorted(v["Version"] for v in versions) == ["$LATEST", "1", "2"]
        assert found["now"] == "2026-01-01T13:00:00+00:00"
    with local_state.opened(old_state) as aws:  # a read command, then a storage-only save (incidents --local)
        local_state.save(aws, old_state)
    assert set(local_state.read_manifest(old_state)) == OLD_KEYS  # still no config, queues nor functions
    assert not (old_state / "sqs").exists()
    assert local_state.saved_config(old_state) == local_state.DEMO_CONFIG


def test_control_local_acts_on_an_old_state_and_saves_it_in_the_current_shape(
    old_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "control", "abort", "dep-saved", *BY, *local(old_state))
    assert code == 0, err
    assert "alias orders-api:live back at 100% version 1" in out  # the alias rebuilt from the history
    manifest = local_state.read_manifest(old_state)
    assert manifest["config_file"] == "examples/demo.yaml" and "NotificationDeadLetterQueue" in manifest["queues"]
    assert manifest["functions"] == {
        "orders-api": {"versions": 2, "aliases": {"live": {"version": "1", "weights": {}}}}
    }
    with reopened(old_state):
        assert alias("orders-api") == ("1", {})
        assert DeploymentRepository().get_deployment("dep-saved").decision == "aborted"


def test_serve_local_opens_an_old_state(old_state: Path) -> None:
    with demo_console(0, state_dir=old_state, live=False) as (server, aws, _):
        assert aws.config_file == local_state.DEMO_CONFIG and alias("orders-api") == ("1", {})
        assert DeploymentRepository().get_deployment("dep-saved").status == DeploymentStatus.IN_PROGRESS
        assert server.url.startswith("http://127.0.0.1:")


HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("held", flush=True)
sys.stdin.read()  # held until the test closes stdin (or the process ends)
"""


def test_a_command_that_saves_fails_naming_the_state_while_another_holds_it(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the state's lock and never lets it go: the command waits the configured time, then
    fails in one line naming the state directory (exit 2, an error), having loaded and saved nothing."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(local_state.lock_path(state))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        monkeypatch.setenv(local_state.LOCK_WAIT_ENV, "0.2")
        before = files(state)
        code, out, err = run(capsys, "control", "abort", "dep-saved", *BY, *local(state))
        assert (code, out) == (2, "") and len(err.splitlines()) == 1
        assert f"the local state {state} is in use by another deployguard command (pid {holder.pid})" in err
        assert "waited 0.2 s" in err and local_state.LOCK_WAIT_ENV in err
        assert files(state) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    code, out, err = run(capsys, "control", "abort", "dep-saved", *BY, *local(state))  # let go: it runs
    assert code == 0, err
    with reopened(state):
        assert DeploymentRepository().get_deployment("dep-saved").decision == "aborted"


def test_a_command_holds_the_lock_from_its_load_to_its_save(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second command (here: another open of the lock) cannot get in between a command's load and its save, so
    it never loads the state the first one is about to replace; once the first saved, it gets the lock."""
    loaded, go_on = threading.Event(), threading.Event()
    real_load = local_state.load

    def load_then_wait(aws: EmbeddedAws, directory: Path) -> None:
        real_load(aws, directory)
        loaded.set()
        assert go_on.wait(timeout=60)

    monkeypatch.setattr(local_state, "load", load_then_wait)
    result: dict[str, int] = {}
    command = threading.Thread(target=lambda: result.update(code=cli.main(["control", "abort", "dep-saved", *BY,
                                                                           *local(state)])))  # fmt: skip
    command.start()
    try:
        assert loaded.wait(timeout=60)
        with (
            pytest.raises(local_state.StateLocked, match=f"the local state {state} is in use"),
            local_state.locked(state, wait=0),
        ):
            pass
    finally:
        go_on.set()
        command.join(timeout=120)
    assert result == {"code": 0}
    with local_state.locked(state, wait=0):  # let go once saved
        pass
    monkeypatch.setattr(local_state, "load", real_load)
    with reopened(state):
        assert DeploymentRepository().get_deployment("dep-saved").decision == "aborted"


def test_a_reader_waits_for_a_save_between_its_renames_and_reads_the_new_state(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only command (no command lock) starting while a save has moved the old state aside and not yet renamed
    the new one into its place neither puts the old one back (the save would fail and its changes be lost) nor sees
    no state: it waits for the swap (on the shared swap lock the save holds exclusive), then reads the new state.
    The save is held between its renames until the reader is seen waiting (no timers raced)."""
    import pathlib

    between, go_on, reader_waits = threading.Event(), threading.Event(), threading.Event()
    reader_on = threading.Event()  # the reader waits, or has ended
    real_rename, real_pause = pathlib.Path.rename, local_state._pause
    writer = threading.current_thread()

    def rename(self: Path, target: Any) -> Any:
        moved = real_rename(self, target)
        if self == state and threading.current_thread() is not writer:  # the old state just moved aside
            between.set()
            assert go_on.wait(timeout=60)
        return moved

    def pause(seconds: float) -> None:
        reader_waits.set()
        reader_on.set()
        real_pause(seconds)

    monkeypatch.setattr(pathlib.Path, "rename", rename)
    monkeypatch.setattr(local_state, "_pause", pause)
    saved: dict[str, Any] = {}
    read: dict[str, Any] = {}
    with local_state.opened(state) as aws:
        clients.client("s3").put_object(Bucket=aws.ref("ReportsBucket"), Key="reports/new.html", Body=b"new")

        def save() -> None:
            try:
                saved["path"] = local_state.save(aws, state)
            except BaseException as exc:  # the test reports it
                saved["error"] = exc

        def reader() -> None:
            try:
                read["present"] = local_state.present(state)
                read["files"] = sorted(files(state))
            except BaseException as exc:  # the test reports it
                read["error"] = exc
            finally:
                reader_on.set()

        writing = threading.Thread(target=save)
        writing.start()
        try:
            assert between.wait(timeout=60)
            reading = threading.Thread(target=reader)
            reading.start()
            assert reader_on.wait(timeout=60)
        finally:
            go_on.set()
            writing.join(timeout=60)
        reading.join(timeout=60)
    assert "error" not in saved, saved
    assert reader_waits.is_set() and read.get("present") is True, read
    assert "s3/ReportsBucket/reports/new.html" in read["files"]  # the new state, whole
    assert (state / "s3" / "ReportsBucket" / "reports" / "new.html").read_bytes() == b"new"
    assert leftovers(state) == []


def test_a_save_whose_swap_and_its_putting_back_fail_raises_the_swaps_error_and_the_next_read_puts_it_back(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new state cannot be renamed into place (a full disk) and neither can the old one be put back: the save
    raises its own error (not the putting back's), and the next read finds the previous state, whole."""
    import pathlib

    before = files(state)
    real_rename = pathlib.Path.rename

    def failing(self: Path, target: Any) -> Any:
        if Path(target) == state and self.name.startswith(f".{state.name}.new-"):  # the new state renamed in
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        if Path(target) == state:  # the old one put back
            raise OSError(errno.EIO, "Input/output error putting it back", str(target))
        return real_rename(self, target)

    with local_state.opened(state) as aws:
        clients.client("s3").put_object(Bucket=aws.ref("ReportsBucket"), Key="reports/new.html", Body=b"new")
        monkeypatch.setattr(pathlib.Path, "rename", failing)
        with pytest.raises(OSError, match="No space left"):
            local_state.save(aws, state)
        monkeypatch.undo()
    assert not state.exists()  # moved aside, not put back ...
    assert local_state.present(state) and files(state) == before  # ... until the next read puts it back
