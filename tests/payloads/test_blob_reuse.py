"""Reusing a stored blob while retention cleanup runs: the reference must never end up pointing at
a deleted blob row (a foreign-key error for the writer, or a lost payload)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from payloads.models import PayloadBlob, PayloadRef
from payloads.store import REUSE_REFRESH_AFTER, payload_store
from tests.payloads.test_retention import age_blob, ago, big_text, blob_file
from tests.pg_locks import wait_until_blocked
from tracefoundry.maintenance import retention_cleanup

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _retention_defaults(settings):
    settings.TRACEFOUNDRY_RETENTION_DAYS = 7
    settings.TRACEFOUNDRY_PAYLOAD_RETENTION_DAYS = 3


def store(text: str) -> str:
    return payload_store(data=text.encode(), content_type="text/plain",
                         redaction_mode="standard").sha256


def test_an_unreferenced_blob_reused_before_cleanup_survives_it(
    django_capture_on_commit_callbacks, payload_dir
):
    text = big_text("orphan, then reused")
    sha = store(text)  # its first writer rolled back: nothing points at it
    age_blob(text, hours=2)  # past the grace period: cleanup would take it
    # A second writer decides to point at the same bytes; its reference is not written yet
    # when cleanup runs.
    assert store(text) == sha
    with django_capture_on_commit_callbacks(execute=True):
        result = retention_cleanup()
    assert result.unreferenced_blobs == 0 and result.expired_blobs == 0
    assert PayloadBlob.objects.filter(sha256=sha).exists() and blob_file(payload_dir, text).exists()
    PayloadRef.objects.create(blob_id=sha, role="input")
    connection.check_constraints()  # the new reference points at a row that exists


def test_an_expired_blob_reused_before_cleanup_survives_it(django_capture_on_commit_callbacks):
    text = big_text("expired, then reused")
    sha = store(text)
    PayloadRef.objects.create(blob_id=sha, role="input")
    age_blob(text, days=4)  # older than the 3-day payload retention, and so is its reference
    PayloadRef.objects.filter(blob_id=sha).update(created_at=ago(days=4))
    assert store(text) == sha
    with django_capture_on_commit_callbacks(execute=True):
        assert retention_cleanup().expired_blobs == 0
    assert PayloadBlob.objects.filter(sha256=sha).exists()
    PayloadRef.objects.create(blob_id=sha, role="output")
    connection.check_constraints()


def test_reusing_a_young_blob_writes_nothing():
    text = big_text("young")
    sha = store(text)
    age_blob(text, seconds=REUSE_REFRESH_AFTER.total_seconds() / 2)
    before = PayloadBlob.objects.get(sha256=sha).created_at
    assert store(text) == sha
    assert PayloadBlob.objects.get(sha256=sha).created_at == before  # no write, no row lock
    age_blob(text, seconds=REUSE_REFRESH_AFTER.total_seconds() * 2)
    store(text)
    assert PayloadBlob.objects.get(sha256=sha).created_at > ago(seconds=60)


def test_a_blob_deleted_by_cleanup_is_stored_again(django_capture_on_commit_callbacks,
                                                    payload_dir):
    text = big_text("collected, then sent again")
    sha = store(text)
    age_blob(text, hours=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert retention_cleanup().unreferenced_blobs == 1
    assert not PayloadBlob.objects.filter(sha256=sha).exists()
    assert store(text) == sha
    assert PayloadBlob.objects.filter(sha256=sha).exists() and blob_file(payload_dir, text).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_cleanup_waits_for_a_writer_that_reuses_the_blob(payload_dir):
    """PostgreSQL, two real connections: a writer reuses an old unreferenced blob inside its
    transaction; a cleanup started meanwhile waits on the blob's row, and after the writer
    commits its reference the blob is kept."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks between two connections: PostgreSQL")
    text = big_text("reused under a concurrent cleanup")
    sha = store(text)
    age_blob(text, hours=2)
    reused, may_commit = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def writer() -> None:
        try:
            with transaction.atomic():
                outcome["sha"] = store(text)
                reused.set()
                may_commit.wait(30)
                PayloadRef.objects.create(blob_id=sha, role="input")
        except Exception as exc:  # reported below, not lost in the thread
            outcome["writer_error"] = exc
        finally:
            reused.set()
            connections.close_all()

    def cleaner() -> None:
        try:
            outcome["result"] = retention_cleanup()
        except Exception as exc:
            outcome["cleanup_error"] = exc
        finally:
            connections.close_all()

    writing = threading.Thread(target=writer)
    writing.start()
    assert reused.wait(30)
    cleaning = threading.Thread(target=cleaner)
    cleaning.start()
    # Let the writer commit once the cleanup is blocked on the blob's row lock (or is done:
    # then there was nothing to wait for, and the assertions below say what went wrong).
    wait_until_blocked(cleaning)
    may_commit.set()
    writing.join(30)
    cleaning.join(30)

    assert "writer_error" not in outcome and "cleanup_error" not in outcome, outcome
    assert outcome["sha"] == sha
    assert outcome["result"].unreferenced_blobs == 0
    assert PayloadBlob.objects.filter(sha256=sha).exists()
    assert PayloadRef.objects.filter(blob_id=sha).count() == 1
    assert blob_file(payload_dir, text).exists()
