"""EventReceipt.event_id is only ever looked up by equality (the primary key serves it): Django's
automatic ``varchar_pattern_ops`` twin index of a CharField primary key costs an index entry on
every ingest and on every pending→done row version (the update is never HOT) for no reader."""

from django.db import migrations

INDEX = "automation_eventreceipt_event_id_f392b11c_like"


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0004_segment_dirty_queue"),
    ]

    operations = [
        migrations.RunSQL(
            f"DROP INDEX IF EXISTS {INDEX}",
            reverse_sql=f"CREATE INDEX IF NOT EXISTS {INDEX} ON automation_eventreceipt (event_id varchar_pattern_ops)",
        ),
    ]
