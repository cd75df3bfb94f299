"""An inline formset that shows only the first N rows of its (ordered) queryset.

Runs can hold 100,000 events and traces 10,000 spans; their admin pages show a capped inline
and link to the full list instead. The cap must apply after the inline is narrowed to its
parent, which happens inside the formset, so it lives here rather than in get_queryset.
"""

from django.forms.models import BaseInlineFormSet


class CappedInlineFormSet(BaseInlineFormSet):
    limit = 50

    def get_queryset(self):
        if not hasattr(self, "_capped"):
            self._capped = super().get_queryset()[: self.limit]
        return self._capped


def capped(limit: int) -> type[CappedInlineFormSet]:
    return type(f"CappedInlineFormSet{limit}", (CappedInlineFormSet,), {"limit": limit})
