"""``POST /otlp/v1/traces``: OTLP/HTTP trace ingest for stock OpenTelemetry exporters.

Follows the OTLP/HTTP spec: protobuf or JSON bodies (the answer uses the request's encoding),
gzip, 200 with ``partial_success`` when some spans were rejected, 400 for undecodable bodies,
413 above the size cap, 415 for other media types, 429/503 with ``Retry-After`` when the server
is busy. Spans are acknowledged only after their transaction commits.
"""

from __future__ import annotations

import logging
import threading
import zlib

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from tracefoundry.api.errors import error_body
from tracefoundry.authentication import KeyRefused, authenticate_key, raw_key_from_headers
from tracefoundry.roles import Access, Cap
from tracefoundry.throttling import IngestThrottle
from traces.otlp_decode import DecodeError, decode_request
from traces.services import spans_ingest

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class _InFlight:
    """Bounds the ingest work one process takes on at once (beyond it: 503 + Retry-After)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def enter(self, limit: int) -> bool:
        with self._lock:
            if self.count >= limit:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


in_flight = _InFlight()


def _error(status: int, code: str, message: str, details: dict | None = None,
           **headers: str) -> JsonResponse:
    response = JsonResponse(error_body(code, message, details), status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _body(request: HttpRequest) -> bytes | JsonResponse:
    limit = settings.TRACEFOUNDRY_OTLP_MAX_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return _error(413, "payload_too_large", f"body is {length} bytes; the limit is {limit}")
    body = request.body
    encoding = request.headers.get("Content-Encoding", "identity").lower()
    if encoding == "gzip":
        try:
            inflater = zlib.decompressobj(wbits=31)
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            return _error(400, "bad_request", f"invalid gzip body: {exc}")
        if len(body) > limit or inflater.unconsumed_tail:
            return _error(413, "payload_too_large", f"decompressed body exceeds {limit} bytes")
    elif encoding not in ("identity", ""):
        return _error(415, "unsupported_media_type", f"unsupported Content-Encoding {encoding}")
    if len(body) > limit:
        return _error(413, "payload_too_large", f"body exceeds {limit} bytes")
    return body


def _authenticate(request: HttpRequest):
    raw = raw_key_from_headers(request.META)
    if not raw:
        return None, _error(401, "not_authenticated", "an ingest API key is required",
                            WWW_Authenticate='Bearer realm="otlp"')
    try:
        key = authenticate_key(raw)
    except KeyRefused as exc:
        return None, _error(401, "authentication_failed", str(exc),
                            WWW_Authenticate='Bearer realm="otlp"')
    if not Access(user=key.user, api_key=key).can(Cap.INGEST):
        return None, _error(403, "permission_denied",
                            "this key cannot ingest (it needs the `ingest` scope, and its user "
                            "an engineer or admin role)")
    return key, None


def _success(content_type: str, rejected: int, message: str) -> HttpResponse:
    if content_type == JSON:
        body = {"partialSuccess": {"rejectedSpans": rejected, "errorMessage": message}} \
            if rejected else {}
        return JsonResponse(body)
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return HttpResponse(response.SerializeToString(), content_type=PROTOBUF)


@csrf_exempt
@require_POST
def otlp_traces(request: HttpRequest) -> HttpResponse:
    content_type = request.content_type
    if content_type not in (PROTOBUF, JSON):
        return _error(415, "unsupported_media_type",
                      f"use {PROTOBUF} or {JSON}, not {content_type or 'nothing'}")
    key, failure = _authenticate(request)
    if failure is not None:
        return failure
    request.auth = key
    throttle = IngestThrottle()
    if not throttle.allow_request(request, None):
        wait = int(throttle.wait() or 1) + 1
        return _error(429, "throttled", "ingest rate limit reached", Retry_After=str(wait))
    if not in_flight.enter(settings.TRACEFOUNDRY_OTLP_MAX_IN_FLIGHT):
        return _error(503, "overloaded", "too much ingest work in flight; retry", Retry_After="1")
    try:
        body = _body(request)
        if isinstance(body, JsonResponse):
            return body
        try:
            decoded = decode_request(body, content_type)
        except DecodeError as exc:
            return _error(400, "bad_request", str(exc),
                          {"field": exc.field} if exc.field else None)
        result = spans_ingest(project=key.project, records=decoded.spans)
    finally:
        in_flight.leave()
    rejected = decoded.rejected + result.rejected
    message = "; ".join(decoded.reasons + result.reasons)
    return _success(content_type, rejected, message)
