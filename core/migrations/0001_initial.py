"""Core's models: ApiKey (from marketing_hub) and Job (from automation) move here with their
tables unchanged; the outbox is new."""

import django.db.models.deletion
import django.db.models.functions.datetime
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('marketing_hub', '0002_roles'),
        ('automation', '0009_audit_rules_matrices'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ApiKey',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('scope', models.CharField(choices=[('ingest', 'Ingest (events, contacts)'), ('admin', 'Admin (everything)')], max_length=10)),
                        ('prefix', models.CharField(help_text='The first characters, to recognise a key in lists.', max_length=12)),
                        ('key_hash', models.CharField(max_length=64, unique=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'marketing_hub_apikey',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='Job',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(help_text='e.g. bulk_tag, import_contacts, rule_backfill', max_length=50)),
                        ('title', models.CharField(blank=True, default='', max_length=200)),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='queued', max_length=10)),
                        ('progress', models.FloatField(default=0.0, help_text='0..1')),
                        ('total', models.BigIntegerField(blank=True, null=True)),
                        ('processed', models.BigIntegerField(default=0)),
                        ('params', models.JSONField(blank=True, default=dict, help_text='JSON scalars the task was started with.')),
                        ('result', models.JSONField(blank=True, default=dict)),
                        ('error', models.TextField(blank=True, default='')),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'automation_job',
                        'ordering': ['-created_at'],
                        'indexes': [models.Index(fields=['status', '-created_at'], name='job_status_idx')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.CreateModel(
            name='OutboxMessage',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('type', models.CharField(max_length=40)),
                ('contact_id', models.BigIntegerField(blank=True, null=True)),
                ('segment_id', models.BigIntegerField(blank=True, null=True)),
                ('program_id', models.BigIntegerField(blank=True, null=True)),
                ('funnel_id', models.BigIntegerField(blank=True, null=True)),
                ('data', models.JSONField(default=dict)),
                ('created_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), default=django.utils.timezone.now)),
                ('dispatched_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'indexes': [models.Index(condition=models.Q(('dispatched_at__isnull', True)), fields=['id'], name='outbox_pending_idx')],
            },
        ),
    ]
