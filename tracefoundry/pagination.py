"""Cursor pagination shared by the list endpoints: stable under inserts, max 100 a page."""

from rest_framework.pagination import CursorPagination


class ListCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 100
    page_size_query_param = "limit"
    ordering = "-created_at"
