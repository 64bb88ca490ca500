"""Event comes from automation (state only: the partitioned table automation_event stays)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('automation', '0009_audit_rules_matrices'),
        ('contacts', '0010_tag_stats_snapshot'),
    ]

    operations = [
        # The table stays where it is; only Django's idea of which app owns the model moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Event',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event_id', models.CharField(max_length=128)),
                        ('type', models.CharField(choices=[('page_view', 'Page view'), ('product_view', 'Product view'), ('add_to_cart', 'Add to cart'), ('cart_abandon', 'Cart abandon'), ('purchase', 'Purchase'), ('email_open', 'Email open'), ('email_click', 'Email click'), ('form_submit', 'Form submit'), ('newsletter_signup', 'Newsletter signup'), ('custom', 'Custom')], max_length=20)),
                        ('occurred_at', models.DateTimeField()),
                        ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('properties', models.JSONField(blank=True, default=dict)),
                        ('value', models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True)),
                        ('contact', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='contacts.contact')),
                    ],
                    options={
                        'db_table': 'automation_event',
                        'ordering': ['-occurred_at'],
                        'managed': True,
                    },
                ),
    
            ],
            database_operations=[],
        ),
    ]
