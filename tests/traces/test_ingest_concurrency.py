"""Two writers of one new trace at once (PostgreSQL, real connections). The ingest path COPYs
the spans of a trace it did not find under a reserved trace pk and creates the trace row last,
without ON CONFLICT: the trace lock must make the second writer wait for the first, then add
its spans to the trace the first created — or reject them when that trace belongs to another
project. No span may be lost, duplicated or left pointing nowhere, and nothing may fail."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from runs.models import Project
from tests.conftest import client_for
from tests.pg_locks import wait_until_blocked
from tests.traces.otlp_builders import json_span, pb_request
from traces.models import Span, Trace
from traces.otlp_decode import decode_request
from traces.services import spans_ingest

pytestmark = [pytest.mark.postgres,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]

TRACE = "c" * 31 + "7"
S1, S2, S3 = "1" * 16, "2" * 16, "3" * 16
PROTOBUF = "application/x-protobuf"


def _race(first_project: Project, second_key: str) -> dict:
    """The first writer creates TRACE (spans S1, S2) and keeps its transaction open; the second
    posts S2 (renamed) and S3 over HTTP and must wait; then the first commits. Returns what
    each saw."""
    if connection.vendor != "postgresql":
        pytest.skip("two writers racing on one trace: PostgreSQL")
    created, may_commit = threading.Event(), threading.Event()
    outcome: dict = {}

    def first() -> None:
        try:
            body = pb_request([json_span(TRACE, S1, "root"),
                               json_span(TRACE, S2, "child", parent=S1)])
            with transaction.atomic():
                spans_ingest(project=first_project,
                             records=decode_request(body, PROTOBUF).spans)
                created.set()
                may_commit.wait(30)
        except Exception as exc:  # reported below, not lost in the thread
            outcome["first_error"] = exc
        finally:
            created.set()
            connections.close_all()

    def second() -> None:
        try:
            body = pb_request([json_span(TRACE, S2, "child renamed", parent=S1),
                               json_span(TRACE, S3, "grandchild", parent=S2)])
            response = client_for(raw_key=second_key).generic(
                "POST", "/otlp/v1/traces", body, content_type=PROTOBUF)
            outcome["status"] = response.status_code
            outcome["answer"] = ExportTraceServiceResponse.FromString(response.content)
        except Exception as exc:
            outcome["second_error"] = exc
        finally:
            connections.close_all()

    writing = threading.Thread(target=first)
    writing.start()
    assert created.wait(30)
    racing = threading.Thread(target=second)
    racing.start()
    outcome["blocked"] = wait_until_blocked(racing)
    may_commit.set()
    writing.join(30)
    racing.join(30)
    assert "first_error" not in outcome and "second_error" not in outcome, outcome
    return outcome


def _no_orphans() -> None:
    assert not Span.objects.exclude(trace_id__in=Trace.objects.values("pk")).exists()
    connection.check_constraints()


def test_the_second_writer_waits_then_joins_the_trace_the_first_created(project, make_key):
    _, raw = make_key("ingest")
    outcome = _race(project, raw)
    assert outcome["blocked"], "the second writer never waited for the first"
    assert outcome["status"] == 200
    assert outcome["answer"].partial_success.rejected_spans == 0

    trace = Trace.objects.get(trace_id=TRACE)
    names = dict(Span.objects.filter(trace=trace).values_list("span_id", "name"))
    assert names == {S1: "root", S2: "child renamed", S3: "grandchild"}
    assert trace.span_count == 3 and trace.root_span_name == "root"
    _no_orphans()


def test_the_second_writers_spans_are_rejected_when_the_trace_is_another_projects(
    project, other_project, make_key
):
    _, raw = make_key("ingest")  # the default project's key
    outcome = _race(other_project, raw)
    assert outcome["blocked"]
    assert outcome["status"] == 200
    assert outcome["answer"].partial_success.rejected_spans == 2
    assert "another project" in outcome["answer"].partial_success.error_message

    trace = Trace.objects.get(trace_id=TRACE)
    assert trace.project == other_project
    names = dict(Span.objects.filter(trace=trace).values_list("span_id", "name"))
    assert names == {S1: "root", S2: "child"}
    assert trace.span_count == 2
    _no_orphans()
