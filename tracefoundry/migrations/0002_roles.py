"""The viewer, engineer and admin groups with the model permissions of PRODUCT.md §12."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

READ_MODELS = [("runs", "project"), ("runs", "run"), ("runs", "step"), ("runs", "runevent")]
ENGINEER_EXTRA = [
    ("runs", "change_run"),
    ("payloads", "view_payloadblob"),
    ("payloads", "view_payloadref"),
]
ADMIN_APPS = ["runs", "payloads", "tracefoundry"]
ADMIN_AUTH = ["add_user", "change_user", "delete_user", "view_user",
              "add_group", "change_group", "delete_group", "view_group"]


def _ensure_permissions(apps):
    # Permissions are normally created after all migrations run; groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def create_roles(apps, schema_editor):
    _ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def perms(pairs):
        found = []
        for app_label, codename in pairs:
            found.extend(Permission.objects.filter(content_type__app_label=app_label,
                                                   codename=codename))
        return found

    view = perms([(app, f"view_{model}") for app, model in READ_MODELS])
    viewer, _ = Group.objects.get_or_create(name="viewer")
    viewer.permissions.set(view)
    engineer, _ = Group.objects.get_or_create(name="engineer")
    engineer.permissions.set(view + perms(ENGINEER_EXTRA))
    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.set(
        list(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
        + perms([("auth", c) for c in ADMIN_AUTH])
    )


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["viewer", "engineer", "admin"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tracefoundry", "0001_initial_api_keys"),
        ("runs", "0002_default_project"),
        ("payloads", "0001_initial_payload_store"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
