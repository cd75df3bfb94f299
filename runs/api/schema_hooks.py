"""The run API's input rules drf-spectacular cannot read from a serializer (a SPECTACULAR
postprocessing hook, listed in settings)."""

from __future__ import annotations

from runs.api.serializers import EVENT_BATCH_MAX


def document_event_rules(result, generator, request, public):
    """`EventInRequest` takes no other fields, a batch (`EventAppendRequest`) holds 1 to
    EVENT_BATCH_MAX events, and the append's body is required."""
    schemas = result.get("components", {}).get("schemas", {})
    if "EventInRequest" in schemas:
        schemas["EventInRequest"]["additionalProperties"] = False
    for variant in schemas.get("EventAppendRequest", {}).get("oneOf", []):
        if variant.get("type") == "array":
            variant.update(minItems=1, maxItems=EVENT_BATCH_MAX)
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method == "post" and operation.get("operationId") == "runs_events_append":
                operation["requestBody"]["required"] = True
    return result
