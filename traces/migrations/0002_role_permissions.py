"""Give the roles their permissions on traces and spans (PRODUCT.md §12)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label="traces",
                                     codename__in=["view_trace", "view_span"])
    for name in ("viewer", "engineer"):
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.add(*view)
    admin = Group.objects.filter(name="admin").first()
    if admin is not None:
        admin.permissions.add(*Permission.objects.filter(content_type__app_label="traces"))


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    perms = Permission.objects.filter(content_type__app_label="traces")
    for group in Group.objects.filter(name__in=["viewer", "engineer", "admin"]):
        group.permissions.remove(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0001_initial_traces_and_spans"),
        ("tracefoundry", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
