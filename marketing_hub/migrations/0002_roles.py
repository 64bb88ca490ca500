"""The three roles are groups. Their Django permissions mirror what the role may change; the views
enforce roles with ``marketing_hub.roles.role_required``."""

from django.db import migrations

ROLE_PERMISSIONS = {
    "Marketer": [
        ("contacts", ["contact", "tag", "contacttag", "note", "consent"]),
        ("automation", ["rule", "segmentationmatrix", "job"]),
        ("segments", ["segment"]),
        ("leads", ["funnel", "stage", "contactstage"]),
    ],
    "Sales": [
        ("contacts", ["note"]),
        ("leads", ["contactstage", "leadstatuschange"]),
    ],
    "Admin": [
        ("contacts", ["contact", "tag", "contacttag", "note", "consent", "suppression"]),
        ("automation", ["rule", "segmentationmatrix", "job", "event"]),
        ("segments", ["segment"]),
        ("leads", ["funnel", "stage", "contactstage", "temperaturesettings", "leadstatuschange"]),
        ("loyalty", ["program", "tier", "contacttier"]),
        ("marketing_hub", ["apikey"]),
    ],
}


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, grants in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for app_label, model_names in grants:
            group.permissions.add(
                *Permission.objects.filter(content_type__app_label=app_label, content_type__model__in=model_names)
            )
    # Sales may view contacts (and change their owner through the lead views), not edit them.
    sales = Group.objects.get(name="Sales")
    sales.permissions.add(*Permission.objects.filter(content_type__app_label="contacts", codename__startswith="view_"))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("marketing_hub", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("contacts", "0001_initial"),
        ("automation", "0002_partition_events"),
        ("leads", "0001_initial"),
        ("segments", "0001_initial"),
        ("loyalty", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
