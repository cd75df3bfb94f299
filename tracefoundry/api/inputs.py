"""The bounds and JSON types every API input is held to, in one place.

What the OpenAPI schema promises is what the code accepts: a value the database cannot store
or compare (an integer beyond its column, a UTC offset PostgreSQL refuses) is a 400 where it
enters, never a 500 at the query; and a JSON body's values must have the JSON type the schema
gives them (DRF would otherwise take ``5`` for a string and ``"1"`` or ``0`` for a boolean).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_INT = 2**31 - 1  # an integer column
MAX_BIGINT = 2**63 - 1  # a bigint column (ids, counters)
# PostgreSQL refuses a timestamp whose UTC offset is beyond ±15:59 ("time zone displacement
# out of range"); Python accepts up to ±23:59.
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)
DATETIME_SCHEMA = {
    "type": "string", "format": "date-time", "pattern": r"(?:[Zz]|[+-](?:0\d|1[0-5]):[0-5]\d)$",
    "description": "ISO 8601 with Z or a UTC offset within ±15:59.",
}


def datetime_checked(value: datetime) -> datetime:
    """``value`` if the database can take it (its UTC offset, its instant), else ValueError."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        raise ValueError("the UTC offset must be within ±15:59")
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date and time out of range") from None
    return value


@extend_schema_field(DATETIME_SCHEMA)
class DateTimeField(serializers.DateTimeField):
    """A JSON date-time the database can store."""

    def to_internal_value(self, value):
        if isinstance(value, str):
            parsed = forms.DateTimeField().to_python(value) if value.strip() else None
            if parsed is not None:
                try:
                    datetime_checked(parsed)
                except ValueError as exc:
                    raise serializers.ValidationError(str(exc), code="invalid") from None
        return super().to_internal_value(value)


class _CheckedIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return datetime_checked(parsed)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


@extend_schema_field(DATETIME_SCHEMA)
class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """``?since=``-style filters: ISO 8601 with an offset the database can compare."""

    field_class = _CheckedIsoDateTimeField


_TRUE_FALSE = {"true", "false", "True", "False", "1", "0"}


class StrictFilterSet(django_filters.FilterSet):
    """A query parameter that is present must hold a value of its type: ``?since=`` or
    ``?min_tokens=`` (empty) is a 400, as is ``?has_error=null``, where django-filter would
    silently drop the filter and answer with unfiltered results."""

    def get_form_class(self):
        typed = {name for name, f in self.filters.items()
                 if not isinstance(f, (django_filters.CharFilter,
                                       django_filters.MultipleChoiceFilter))}
        booleans = {name for name, f in self.filters.items()
                    if isinstance(f, django_filters.BooleanFilter)}

        class Form(super().get_form_class()):
            def clean(self):
                cleaned = super().clean()
                for name in typed & set(self.data):
                    raw = self.data.get(name)
                    if name in booleans and raw not in _TRUE_FALSE:
                        self.add_error(name, "Must be true or false.")
                    elif raw is not None and not str(raw).strip():
                        self.add_error(name, "Must not be empty; leave the parameter out.")
                return cleaned

        return Form


# --- JSON bodies ------------------------------------------------------------------------------

def _json_type_error(field: serializers.Field, value) -> str | None:
    """What is wrong with the JSON type of ``value`` for ``field`` (None when nothing is)."""
    if value is None:
        return None  # the field's own allow_null decides
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be a boolean (true or false)."
    if isinstance(field, serializers.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "Must be an integer."
    if isinstance(field, (serializers.CharField, serializers.ChoiceField,
                          serializers.DateTimeField)):
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return "Must be a list."
        for item in value:
            problem = _json_type_error(field.child, item)
            if problem:
                return f"Each item: {problem[0].lower()}{problem[1:]}"
    return None


class JSONInputSerializer(serializers.Serializer):
    """Base of the serializers that validate JSON request bodies: each value must have the JSON
    type of its field before DRF's own (lenient, form-friendly) conversion runs."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            errors = {}
            for name, field in self.fields.items():
                if field.read_only or name not in data:
                    continue
                problem = _json_type_error(field, data[name])
                if problem:
                    errors[name] = [problem]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class OptionalIdField(serializers.CharField):
    """A reference to another object that may be absent: ``null``, never ``""``, so a client that
    builds a URL from it (``/runs/{run_id}``) cannot end up on the list endpoint instead."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_null=True, read_only=True, **kwargs)

    def to_representation(self, value):
        return value or None
