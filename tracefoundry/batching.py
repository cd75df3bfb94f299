"""Deleting many rows in bounded batches, each in a transaction of its own (retention, purge)."""

from __future__ import annotations

from collections import Counter
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


def parents_delete(
    expired: QuerySet,
    *,
    children: Callable[[list], QuerySet],
    delete_children: Callable[[QuerySet], object],
    batch_size: int,
    progress: Callable[[Counter[str]], None] | None = None,
) -> Counter[str]:
    """Delete the rows of ``expired`` ``batch_size`` at a time: first each batch's
    ``children(pks)`` with ``delete_children``, in batches of their own (a run with 100,000
    events never becomes one giant transaction), then the batch itself, re-checked against
    ``expired`` inside the transaction (only what is still expired goes). Returns the rows
    deleted per model label (``"runs.Run"``), cascades included; ``progress`` gets them after
    every batch."""
    deleted: Counter[str] = Counter()
    remaining = expired
    while pks := ids_page(remaining, batch_size):
        remaining = expired.filter(pk__gt=pks[-1])
        kids = children(pks)
        deleted[kids.model._meta.label] += delete_in_batches(
            kids, delete_children, batch_size=batch_size
        )
        with transaction.atomic():
            _, per_model = expired.filter(pk__in=pks).delete()
        deleted.update(per_model)
        if progress is not None:
            progress(deleted)
    return deleted
