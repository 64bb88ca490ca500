"""Job moves to core, Event to contacts, the segments' dirty queue to segments (state only)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0001_initial'),
        ('contacts', '0011_event_from_automation'),
        ('segments', '0002_dirty_queue_from_automation'),
        ('automation', '0009_audit_rules_matrices'),
    ]

    operations = [
        # The table stays where it is; only Django's idea of which app owns the model moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='event',
                    name='contact',
                ),
                migrations.RemoveField(
                    model_name='job',
                    name='created_by',
                ),
                migrations.DeleteModel(
                    name='SegmentDirtyContact',
                ),
                migrations.DeleteModel(
                    name='Event',
                ),
                migrations.DeleteModel(
                    name='Job',
                ),
    
            ],
            database_operations=[],
        ),
    ]
