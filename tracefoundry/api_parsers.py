"""JSON parsing with a hard body limit (413) enforced before the body is read into memory.

DRF reads the request stream itself, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE never applies.
"""

from __future__ import annotations

import io

import orjson
from django.conf import settings
from rest_framework.parsers import JSONParser

from tracefoundry.api_exceptions import PayloadTooLarge


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.TRACEFOUNDRY_MAX_REQUEST_BYTES
        request = (parser_context or {}).get("request")
        meta = request.META if request is not None else {}
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}")
        if stream is None:
            return super().parse(stream, media_type, parser_context)
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        try:
            # orjson parses a 1,000-event batch several times faster than the standard library
            # and, like DRF's strict mode, rejects NaN and Infinity.
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            # What orjson refuses but JSON allows (integers beyond 64 bits) or the standard
            # library's own error message for what is really malformed.
            return super().parse(io.BytesIO(data), media_type, parser_context)
