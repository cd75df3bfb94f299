"""Retention (`manage.py cleanup`): old runs, traces and payload blobs leave the database and the
payload storage; unfinished runs, recent rows and young or referenced blobs stay."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from payloads.models import PayloadBlob, PayloadRef
from runs import services
from runs.models import Project, Run, RunEvent, RunState, Step
from tests.factories import PayloadBlobFactory
from tests.traces.otlp_builders import json_request, json_span
from tracefoundry.maintenance import retention_cleanup
from traces.models import Span, Trace
from traces.otlp_decode import decode_json
from traces.services import spans_ingest

pytestmark = pytest.mark.django_db
BIG = 9 * 1024  # over TRACEFOUNDRY_INLINE_STRING_LIMIT / TRACEFOUNDRY_SPAN_INLINE_LIMIT


@pytest.fixture(autouse=True)
def _retention_defaults(settings):
    settings.TRACEFOUNDRY_RETENTION_DAYS = 7
    settings.TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS = 3


def ago(**delta) -> timezone.datetime:
    return timezone.now() - timedelta(**delta)


def big_text(tag: str) -> str:
    return f"{tag}\n" + "a line of a long diff\n" * (BIG // 20)


def sha_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_run(state: str = RunState.SUCCEEDED, *, payloads: tuple[str, ...] = (),
             events: int = 2) -> Run:
    """A run made through the services: one step, ``events`` notes, one event per payload."""
    run, _ = services.run_enqueue(project=Project.objects.get(slug="default"),
                                  kind="agent.session")
    if state == RunState.QUEUED:
        return run
    services.run_start(run_id=run.id, worker_id="w-1")
    step = services.step_create(run_id=run.id, name="plan")
    notes = [{"type": "note", "step_id": step.id, "payload": {"i": i}} for i in range(events)]
    notes += [{"type": "patch_proposed", "payload": {"diff": text}} for text in payloads]
    if notes:
        services.event_append_batch(run_id=run.id, events=notes)
    if state == RunState.SUCCEEDED:
        services.run_succeed(run_id=run.id)
    elif state == RunState.FAILED:
        services.run_fail(run_id=run.id, error="boom")
    elif state == RunState.CANCELED:
        services.run_cancel(run_id=run.id, force=True)
    run.refresh_from_db()
    return run


def age_run(run: Run, **delta) -> None:
    when = ago(**delta)
    fields = {"created_at": when, "updated_at": when}
    if run.finished_at:
        fields["finished_at"] = when
    Run.objects.filter(pk=run.pk).update(**fields)


def age_blob(text_or_sha: str, **delta) -> None:
    sha = text_or_sha if len(text_or_sha) == 64 else sha_of(text_or_sha)
    assert PayloadBlob.objects.filter(sha256=sha).update(created_at=ago(**delta)) == 1


def ingest_trace(trace_id: str, *, spans: int = 2, prompt: str = "") -> Trace:
    attrs = {"input.value": prompt} if prompt else {}
    body = json_request([json_span(trace_id, f"{i + 1:016x}", f"op {i}", attributes=attrs)
                         for i in range(spans)])
    spans_ingest(project=Project.objects.get(slug="default"), records=decode_json(body).spans)
    return Trace.objects.get(trace_id=trace_id)


def blob_file(payload_dir: Path, text: str) -> Path:
    sha = sha_of(text)
    return payload_dir / "blobs" / sha[:2] / sha[2:4] / f"{sha}.zst"


def cleanup(capture, *args: str) -> str:
    """Run the command; file deletions (scheduled on commit) happen before this returns."""
    out = StringIO()
    with capture(execute=True):
        call_command("cleanup", *args, stdout=out)
    return out.getvalue()


def counts(output: str) -> dict[str, int]:
    rows = [line.strip().rsplit(": ", 1) for line in output.splitlines() if line.startswith("  ")]
    return {label: int(n) for label, n in rows}


# --- runs ----------------------------------------------------------------------------------

def test_old_finished_runs_go_with_steps_events_and_refs(
    django_capture_on_commit_callbacks, payload_dir
):
    diff = big_text("old run")
    old = {state: make_run(state, payloads=(diff,) if state == RunState.SUCCEEDED else ())
           for state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED)}
    for run in old.values():
        age_run(run, days=8)
    queued, running = make_run(RunState.QUEUED), make_run(RunState.RUNNING)
    age_run(queued, days=30)
    age_run(running, days=30)
    recent = make_run(RunState.SUCCEEDED)
    age_run(recent, days=6)
    old_events = RunEvent.objects.filter(run__in=old.values()).count()
    assert PayloadRef.objects.filter(run_event__run=old[RunState.SUCCEEDED]).count() == 1

    output = cleanup(django_capture_on_commit_callbacks)

    assert set(Run.objects.values_list("pk", flat=True)) == {queued.pk, running.pk, recent.pk}
    assert not Step.objects.filter(run__in=[r.pk for r in old.values()]).exists()
    assert not RunEvent.objects.filter(run__in=[r.pk for r in old.values()]).exists()
    assert RunEvent.objects.filter(run=running).count() == running.event_count
    assert PayloadRef.objects.count() == 0
    got = counts(output)
    assert got["runs"] == 3 and got["steps"] == 3 and got["run events"] == old_events
    assert output.startswith("Deleted: runs and traces older than 7 days")
    # The old run's blob lost its last reference, but it is younger than the grace period: a
    # writer may be about to reference it. Once older, it is collected, with its file.
    assert got["payload blobs (unreferenced)"] == 0 and blob_file(payload_dir, diff).exists()
    age_blob(diff, hours=2)
    assert counts(cleanup(django_capture_on_commit_callbacks))["payload blobs (unreferenced)"] == 1
    assert not PayloadBlob.objects.exists() and not blob_file(payload_dir, diff).exists()


def test_retention_days_come_from_settings(settings, django_capture_on_commit_callbacks):
    settings.TRACEFOUNDRY_RETENTION_DAYS = 30
    run = make_run()
    age_run(run, days=8)
    output = cleanup(django_capture_on_commit_callbacks)
    assert "older than 30 days" in output and Run.objects.filter(pk=run.pk).exists()
    age_run(run, days=31)
    assert counts(cleanup(django_capture_on_commit_callbacks))["runs"] == 1


# --- traces --------------------------------------------------------------------------------

def test_old_traces_go_with_spans_and_refs(django_capture_on_commit_callbacks):
    prompt = big_text("old prompt")
    old = ingest_trace("a" * 32, spans=3, prompt=prompt)
    imported = ingest_trace("b" * 32)  # ended long ago, but we only just received it
    recent = ingest_trace("c" * 32)
    Trace.objects.filter(pk=old.pk).update(end_time=ago(days=8), updated_at=ago(days=8))
    Trace.objects.filter(pk=imported.pk).update(end_time=ago(days=400))
    Trace.objects.filter(pk=recent.pk).update(end_time=ago(days=1), updated_at=ago(days=1))
    assert PayloadRef.objects.filter(span__trace=old).count() == 3

    got = counts(cleanup(django_capture_on_commit_callbacks))

    assert got["traces"] == 1 and got["spans"] == 3
    assert set(Trace.objects.values_list("pk", flat=True)) == {imported.pk, recent.pk}
    assert Span.objects.count() == 4 and PayloadRef.objects.count() == 0


# --- payload blobs ----------------------------------------------------------------------------

def test_payload_blobs_expire_after_their_last_use(
    django_capture_on_commit_callbacks, payload_dir
):
    expired, reused, fresh = big_text("expired"), big_text("reused"), big_text("fresh")
    run = make_run(payloads=(expired, reused, fresh))
    age_run(run, days=1)  # the run itself is kept for TRACEFOUNDRY_RETENTION_DAYS
    age_blob(expired, days=4)
    PayloadRef.objects.filter(blob_id=sha_of(expired)).update(created_at=ago(days=4))
    age_blob(reused, days=4)  # stored long ago, referenced again today: the ref keeps it
    age_blob(fresh, days=2)

    got = counts(cleanup(django_capture_on_commit_callbacks))

    assert got["payload blobs (expired)"] == 1 and got["runs"] == 0
    assert set(PayloadBlob.objects.values_list("sha256", flat=True)) == {
        sha_of(reused), sha_of(fresh)}
    assert not blob_file(payload_dir, expired).exists()
    assert blob_file(payload_dir, reused).exists() and blob_file(payload_dir, fresh).exists()
    assert not PayloadRef.objects.filter(blob_id=sha_of(expired)).exists()
    assert RunEvent.objects.filter(run=run).count() == run.event_count  # metadata stays


def test_unreferenced_blobs_are_collected_after_the_grace_period(
    django_capture_on_commit_callbacks, payload_dir
):
    def orphan(text: str) -> str:  # a writer that stored its blob, then rolled back
        return PayloadBlobFactory(data=text.encode(), content_type="text/plain").sha256

    young, old = big_text("young orphan"), big_text("old orphan")
    orphan(young)
    age_blob(orphan(old), hours=2)
    referenced = big_text("referenced")
    make_run(payloads=(referenced,))
    age_blob(referenced, hours=2)
    output_run = make_run(RunState.RUNNING)
    services.run_succeed(run_id=output_run.id, output={"answer": 42, "notes": "n" * 9000})
    output_sha = Run.objects.get(pk=output_run.pk).output_ref.removeprefix("sha256:")
    age_blob(output_sha, hours=2)

    got = counts(cleanup(django_capture_on_commit_callbacks))

    assert got["payload blobs (unreferenced)"] == 1 and got["payload blobs (expired)"] == 0
    assert not PayloadBlob.objects.filter(sha256=sha_of(old)).exists()
    assert not blob_file(payload_dir, old).exists()
    assert set(PayloadBlob.objects.values_list("sha256", flat=True)) == {
        sha_of(young), sha_of(referenced), output_sha}
    assert blob_file(payload_dir, young).exists()


def test_a_rolled_back_cleanup_leaves_rows_and_files(payload_dir):
    text = big_text("orphan")
    PayloadBlobFactory(data=text.encode(), content_type="text/plain")
    age_blob(text, hours=2)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert retention_cleanup().unreferenced_blobs == 1
        raise RuntimeError("crash before the commit")
    assert PayloadBlob.objects.filter(sha256=sha_of(text)).exists()
    assert blob_file(payload_dir, text).exists()


def test_a_file_that_cannot_be_deleted_does_not_stop_cleanup(
    django_capture_on_commit_callbacks, monkeypatch, payload_dir
):
    texts = [big_text(f"orphan {i}") for i in range(2)]
    for text in texts:
        PayloadBlobFactory(data=text.encode(), content_type="text/plain")
        age_blob(text, hours=2)

    def unavailable(self, name):
        raise OSError("storage unavailable")

    monkeypatch.setattr(FileSystemStorage, "delete", unavailable)
    got = counts(cleanup(django_capture_on_commit_callbacks))
    # Rows go first: what is left is a file nothing points at, never a row without its file.
    assert got["payload blobs (unreferenced)"] == 2 and not PayloadBlob.objects.exists()
    assert all(blob_file(payload_dir, text).exists() for text in texts)


# --- the command ---------------------------------------------------------------------------

def build_everything_expirable() -> None:
    for i in range(3):
        run = make_run(payloads=(big_text(f"run {i}"),), events=3)
        age_run(run, days=10)
        age_blob(big_text(f"run {i}"), hours=2)  # unreferenced once its run is gone
    for i in range(2):
        prompt = big_text(f"trace {i}") if i else ""
        trace = ingest_trace(f"{i + 1:032x}", spans=3, prompt=prompt)
        Trace.objects.filter(pk=trace.pk).update(end_time=ago(days=9), updated_at=ago(days=9))
        if prompt:
            age_blob(prompt, hours=2)  # unreferenced once its trace is gone
    kept = make_run(payloads=(big_text("kept"),))
    age_blob(big_text("kept"), days=5)  # expired: referenced, but not for days
    PayloadRef.objects.filter(run_event__run=kept).update(created_at=ago(days=5))
    ingest_trace("f" * 32, prompt=big_text("live trace"))
    age_blob(big_text("live trace"), hours=2)  # a live span points at it: kept


def test_dry_run_prints_what_would_go_and_changes_nothing(
    django_capture_on_commit_callbacks, payload_dir
):
    build_everything_expirable()
    before = (Run.objects.count(), RunEvent.objects.count(), Span.objects.count(),
              PayloadBlob.objects.count(), len(list(payload_dir.rglob("*.zst"))))
    old_events = RunEvent.objects.filter(run__created_at__lt=ago(days=1)).count()

    dry = cleanup(django_capture_on_commit_callbacks, "--dry-run")

    assert dry.startswith("Would delete (dry run, nothing changed)")
    assert before == (Run.objects.count(), RunEvent.objects.count(), Span.objects.count(),
                      PayloadBlob.objects.count(), len(list(payload_dir.rglob("*.zst"))))
    real = cleanup(django_capture_on_commit_callbacks)
    assert counts(dry) == counts(real) == {
        "runs": 3, "steps": 3, "run events": old_events, "traces": 2, "spans": 6,
        "payload blobs (expired)": 1, "payload blobs (unreferenced)": 4,
    }
    assert PayloadBlob.objects.get().sha256 == sha_of(big_text("live trace"))
    assert len(list(payload_dir.rglob("*.zst"))) == 1


def test_small_batches_delete_everything(django_capture_on_commit_callbacks, payload_dir):
    build_everything_expirable()
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("cleanup", "--batch-size", "2", "--verbosity", "2", stdout=out)
    assert counts(out.getvalue())["runs"] == 3
    assert "runs: 2 deleted so far" in out.getvalue()  # progress per batch
    assert Run.objects.count() == 1 and Trace.objects.count() == 1
    assert PayloadBlob.objects.count() == 1 and len(list(payload_dir.rglob("*.zst"))) == 1


def test_bad_batch_size_is_refused():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("cleanup", "--batch-size", "0")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_files_go_once_the_delete_commits(payload_dir):
    """No test transaction around the command here: the real commit triggers the deletes."""
    build_everything_expirable()
    out = StringIO()
    call_command("cleanup", stdout=out)
    assert counts(out.getvalue())["payload blobs (unreferenced)"] == 4
    assert PayloadBlob.objects.count() == 1 and len(list(payload_dir.rglob("*.zst"))) == 1
