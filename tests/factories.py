"""Factories for the rows tests need, each built the way the product builds it where a service
exists (API keys through ``apikey_create``, blobs through the payload store), with ``SubFactory``
for what a row belongs to. Runs: tests/runs/factories.py (built through the run services)."""

from __future__ import annotations

import secrets
import time

import factory
from django.utils import timezone

from payloads.models import PayloadBlob
from payloads.store import payload_store
from runs.models import Project
from tests.runs.factories import ProjectFactory
from tests.tracefoundry.factories import UserFactory
from tracefoundry.models import ApiKey
from tracefoundry.services import apikey_create
from traces.models import Span, Trace

__all__ = ["ApiKeyFactory", "PayloadBlobFactory", "ProjectFactory", "SpanFactory",
           "TraceFactory", "UserFactory"]


def _default_project() -> Project:
    return Project.objects.get(slug="default")


class ApiKeyFactory(factory.Factory):
    """A real key: ``key.raw`` holds the secret the caller sends (shown once in the product)."""

    class Meta:
        model = ApiKey

    project = factory.LazyFunction(_default_project)
    scopes = "runs:read"
    name = factory.Sequence(lambda n: f"key {n}")
    user = None

    @classmethod
    def _create(cls, model_class, **kwargs) -> ApiKey:
        issued = apikey_create(**kwargs)
        issued.key.raw = issued.raw
        return issued.key


class PayloadBlobFactory(factory.Factory):
    """A stored blob (file and row) with distinct bytes unless ``data`` is given."""

    class Meta:
        model = PayloadBlob

    data = factory.Sequence(lambda n: f"payload {n} {secrets.token_hex(8)}".encode())
    content_type = "text/plain; charset=utf-8"
    redaction_mode = "standard"

    @classmethod
    def _create(cls, model_class, **kwargs) -> PayloadBlob:
        stored = payload_store(**kwargs)
        return PayloadBlob.objects.get(sha256=stored.sha256)


class TraceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trace

    trace_id = factory.LazyFunction(lambda: secrets.token_hex(16))
    project = factory.SubFactory(ProjectFactory)
    root_span_name = factory.Sequence(lambda n: f"agent run {n}")
    service_name = "factory-agent"
    start_time = factory.LazyFunction(timezone.now)
    end_time = factory.LazyAttribute(lambda o: o.start_time)


class SpanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Span

    trace = factory.SubFactory(TraceFactory)
    span_id = factory.LazyFunction(lambda: secrets.token_hex(8))
    name = factory.Sequence(lambda n: f"step {n}")
    start_time_unix_nano = factory.LazyFunction(lambda: time.time_ns())
    end_time_unix_nano = factory.LazyAttribute(lambda o: o.start_time_unix_nano + 2_500_000)
    duration_ms = 2.5
