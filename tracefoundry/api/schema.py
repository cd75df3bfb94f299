"""Schema-only serializers shared by the API's OpenAPI description."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid`.")
    message = serializers.CharField(help_text="What went wrong, for people.")
    details = serializers.DictField(help_text="Structured context (fields, current state, …).")


class ErrorSerializer(serializers.Serializer):
    """Every API error: `{"error": {"code", "message", "details"}}`."""

    error = ErrorBodySerializer()


def error_response(description: str) -> OpenApiResponse:
    """An OpenAPI response documented with the common error shape."""
    return OpenApiResponse(response=ErrorSerializer, description=description)


def common_errors(not_found: str) -> dict[int, OpenApiResponse]:
    """The errors every authenticated read endpoint can answer."""
    return {
        400: error_response("Invalid input"),
        401: error_response("Not authenticated"),
        403: error_response("Role or key scope does not allow this"),
        404: error_response(not_found),
    }


def validated(serializer_class, data) -> dict:
    """Validate ``data`` with an input serializer (400 with field details when invalid)."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data



# Text fields refuse NUL (DRF's CharField; PostgreSQL text cannot hold it), and a required text
# field is trimmed before it is checked for blank: say so in the schema of every free-text
# input, so clients (and the fuzzer) know.
NO_NUL_PATTERN = "^[^\\x00]*$"
NOT_BLANK_PATTERN = "^[^\\x00]*[^\\s\\x00][^\\x00]*$"


def _forbid_nul(schema: dict) -> None:
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not {"pattern", "enum", "format"} & set(schema):
        schema["pattern"] = NOT_BLANK_PATTERN if schema.get("minLength") else NO_NUL_PATTERN
    for sub in schema.get("properties", {}).values():
        _forbid_nul(sub)
    _forbid_nul(schema.get("items"))


def forbid_nul_in_inputs(result, generator, request, public):
    """SPECTACULAR postprocessing hook: free text in a request body or a parameter never holds
    NUL (drf-spectacular cannot read that rule from a serializer)."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        if name.endswith("Request"):
            _forbid_nul(schema)
    for item in result.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                _forbid_nul(parameter.get("schema"))
    return result
