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
