"""Every role may see the worker registry (viewer+, PRODUCT.md §12): the admin's read-only list."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = ("viewer", "engineer", "admin")


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label="runs", codename="view_worker")
    for group in Group.objects.filter(name__in=ROLES):
        group.permissions.add(*view)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label="runs", codename="view_worker")
    for group in Group.objects.filter(name__in=ROLES):
        group.permissions.remove(*view)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0005_add_worker_registry"),
        ("tracefoundry", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
