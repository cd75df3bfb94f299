"""Cursor pagination shared by the list endpoints: stable under inserts, max 100 a page."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

from tracefoundry.api.inputs import MAX_BIGINT, datetime_checked


class ListCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 100
    page_size_query_param = "limit"
    ordering = "-created_at"

    def get_page_size(self, request) -> int:
        """``limit``: a whole number from 1 (a 400 otherwise); above the maximum, the maximum."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError({self.page_size_query_param: [
                f"A whole number from 1 (pages hold at most {self.max_page_size})."]})
        return min(size, self.max_page_size)

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """DRF's cursor, with its position checked against the sort column: a forged cursor
        is a 400 (bad input, like every other; DRF answers 404), not a 500 from the query it
        would build."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise self._invalid_cursor() from None
        if cursor is None or cursor.position is None:
            return cursor
        ordering = self.ordering if isinstance(self.ordering, (list, tuple)) else [self.ordering]
        field = self._model._meta.get_field(ordering[0].lstrip("-"))
        try:
            value = field.to_python(cursor.position)
            if isinstance(value, int) and abs(value) > MAX_BIGINT:
                raise ValueError("out of range")
            if isinstance(field, models.DateTimeField):
                datetime_checked(value)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            raise self._invalid_cursor() from None
        return cursor

    def _invalid_cursor(self) -> ValidationError:
        return ValidationError({self.cursor_query_param: [self.invalid_cursor_message]})

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (
                    f"Page size: default {self.page_size}; above {self.max_page_size}, "
                    f"{self.max_page_size}.")
        return parameters
