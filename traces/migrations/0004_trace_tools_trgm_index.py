"""A trigram index on the text of ``traces_trace.tools`` (PostgreSQL only).

``GET /api/v1/traces?tool=<substring>`` matches a tool name case-insensitively anywhere in it;
without an index a rare or absent name scans every trace. ``traces.api.filters`` adds
``tools::text ILIKE '%…%'`` to the query, which this GIN index serves. Not in the model's
``Meta.indexes``: it needs the pg_trgm extension and means nothing to SQLite, where this
migration does nothing.
"""

from django.db import migrations

INDEX = "trace_tools_trgm_idx"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON traces_trace "
        f"USING gin ((tools::text) gin_trgm_ops)"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):

    dependencies = [
        ("traces", "0003_sort_indexes_with_id"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
