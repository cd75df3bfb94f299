"""Schema-only serializers shared by the API's OpenAPI description."""

from rest_framework import serializers


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid`.")
    message = serializers.CharField(help_text="What went wrong, for people.")
    details = serializers.DictField(help_text="Structured context (fields, current state, …).")


class ErrorSerializer(serializers.Serializer):
    """Every API error: `{"error": {"code", "message", "details"}}`."""

    error = ErrorBodySerializer()
