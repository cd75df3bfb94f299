from django.db import migrations


def create_default_project(apps, schema_editor):
    Project = apps.get_model("runs", "Project")
    Project.objects.get_or_create(slug="default", defaults={"name": "Default project"})


class Migration(migrations.Migration):
    dependencies = [("runs", "0001_initial_run_ledger")]

    operations = [migrations.RunPython(create_default_project, migrations.RunPython.noop)]
