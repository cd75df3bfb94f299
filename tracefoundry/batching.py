"""Deleting many rows in bounded batches, each in a transaction of its own (retention, purge)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.models import QuerySet


def ids_page(qs: QuerySet, size: int) -> list:
    """The first ``size`` primary keys of ``qs`` in key order."""
    return list(qs.order_by("pk").values_list("pk", flat=True)[:size])


def delete_in_batches(children: QuerySet, delete: Callable[[QuerySet], object], *,
                      batch_size: int) -> int:
    """Delete ``children`` batch by batch, loading nothing but their ids; returns how many."""
    total = 0
    while True:
        with transaction.atomic():
            ids = ids_page(children, batch_size)
            if not ids:
                return total
            delete(children.model.objects.filter(pk__in=ids).only("pk"))
        total += len(ids)
