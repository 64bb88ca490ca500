"""ApiKey moves to core (state only)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0001_initial'),
        ('marketing_hub', '0002_roles'),
    ]

    operations = [
        # The table stays where it is; only Django's idea of which app owns the model moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='ApiKey',
                ),
    
            ],
            database_operations=[],
        ),
    ]
