"""The dirty queue comes from automation (state only)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('automation', '0009_audit_rules_matrices'),
        ('segments', '0001_initial'),
    ]

    operations = [
        # The table stays where it is; only Django's idea of which app owns the model moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='SegmentDirtyContact',
                    fields=[
                        ('id', models.BigAutoField(primary_key=True, serialize=False)),
                        ('contact_id', models.BigIntegerField()),
                        ('marked_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ],
                    options={
                        'db_table': 'automation_segmentdirtycontact',
                    },
                ),
    
            ],
            database_operations=[],
        ),
    ]
