"""``GET /api/v1/payloads/{sha256}``: the contents of a payload blob, for engineers and admins.

Viewers only ever see the redacted, truncated previews in spans and events (PRODUCT.md §6, §12),
so this endpoint is 403 for them. API keys read payloads only with the ``runs:read`` scope and a
user who is an engineer or admin: a key never grants more than its user may do, and a key without
a user has no role. Blobs are content-addressed and shared between projects, so a key reads only
the blobs its own project's events, spans or run outputs refer to (``references.project_refers``):
any other hash is 404 for it, as if the blob did not exist.

Single byte ranges are served (``Range: bytes=a-b``, ``a-``, ``-n``: 206 with
``Content-Range``); a range starting past the end is 416; other Range headers are ignored, as
RFC 9110 allows, and the whole body is sent.
"""

from __future__ import annotations

import re

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from payloads import selectors
from tracefoundry.api.errors import error_body
from tracefoundry.api.permissions import access_for, allows
from tracefoundry.api.renderers import FastJSONRenderer
from tracefoundry.api.schema import ErrorSerializer
from tracefoundry.roles import Cap

_BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    pass


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte positions ``header`` asks for, or None for the whole
    body (no range, several ranges, or a malformed one); raises RangeNotSatisfiable."""
    match = _BYTE_RANGE.match(header.replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(size - length, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(int(last) if last else size - 1, size - 1)


class CanReadPayloads(allows(Cap.PAYLOADS)):
    message = "payload contents are for engineers and admins"


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """Clients asking for the blob's own type (or */*) must not get a 406: the body is the blob,
    and errors are JSON whatever they accept."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


class PayloadView(APIView):
    permission_classes = [CanReadPayloads]
    renderer_classes = [FastJSONRenderer]
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        parameters=[OpenApiParameter("Range", str, OpenApiParameter.HEADER, description=(
            "One byte range: `bytes=first-last`, `bytes=first-` or `bytes=-suffix_length`."))],
        responses={
            # Any media type, any body: the blob is served as it was stored (JSON, text, bytes).
            (200, "*/*"): OpenApiResponse(
                OpenApiTypes.ANY, description="The decompressed bytes, with the blob's "
                "content type in `Content-Type`."),
            (206, "*/*"): OpenApiResponse(
                OpenApiTypes.ANY, description="The requested byte range (`Content-Range`)."),
            401: _error("Not authenticated"),
            403: _error("Viewers, and keys without `runs:read` or an engineer/admin user"),
            404: _error("No such payload"),
            416: _error("Range not satisfiable; `Content-Range: bytes */size`"),
        },
        operation_id="payloads_retrieve",
        description="The contents of a payload blob, by the SHA-256 of its (redacted) bytes; "
        "`sha256:` prefixed references are accepted as they are.",
    )
    def get(self, request, sha256: str):
        blob = selectors.payload_get(sha256=sha256,
                                     project_id=access_for(request).project_id)
        data = selectors.payload_content(blob=blob)
        size, etag = len(data), f'"{blob.sha256}"'
        if request.headers.get("If-None-Match") == etag:
            return self._headers(HttpResponse(status=304), etag)
        requested = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if requested and (if_range is None or if_range == etag):
            try:
                span = byte_range(requested, size)
            except RangeNotSatisfiable:
                return Response(
                    error_body("range_not_satisfiable",
                               f"the payload is {size} bytes; {requested} is outside it",
                               {"size": size}),
                    status=416, headers={"Content-Range": f"bytes */{size}"},
                )
            if span is not None:
                first, last = span
                response = HttpResponse(data[first:last + 1], status=206,
                                        content_type=blob.content_type)
                response["Content-Range"] = f"bytes {first}-{last}/{size}"
                return self._headers(response, etag)
        return self._headers(HttpResponse(data, content_type=blob.content_type), etag)

    @staticmethod
    def _headers(response: HttpResponse, etag: str) -> HttpResponse:
        response["ETag"] = etag
        response["Accept-Ranges"] = "bytes"
        response["Cache-Control"] = "private, max-age=3600"
        # Payloads are agent output: never let a browser sniff or run them as a page.
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response

