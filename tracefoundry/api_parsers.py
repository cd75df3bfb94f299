"""JSON parsing with a hard body limit (413) enforced before the body is read into memory.

DRF reads the request stream itself, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE never applies.
"""

from __future__ import annotations

import io

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
        if stream is not None and not length:
            data = stream.read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            stream = io.BytesIO(data)
        return super().parse(stream, media_type, parser_context)
