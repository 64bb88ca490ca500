"""Autovacuum thresholds for the tables the rules engine rewrites all day.

PostgreSQL's default (vacuum when 20% of a table is dead) lets contact-tags go 1.5M dead rows at a
million contacts before a vacuum: until then every page a rule touched is out of the visibility
map, and the segment counts' index-only scans on ``contacttag_tag_score_idx`` fetch heap pages
again (a one-tag count went from 6 ms to 60 ms after a million ingested events). 2% keeps the map
fresh; the contact table (score, last activity) gets 5%.
"""

from django.db import migrations

TABLES = {"contacts_contacttag": 0.02, "contacts_contact": 0.05}


class Migration(migrations.Migration):

    dependencies = [("contacts", "0007_lean_tagscorechange_indexes")]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = {factor}, "
             f"autovacuum_analyze_scale_factor = {factor})" for table, factor in TABLES.items()],
            reverse_sql=[f"ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor)"
                         for table in TABLES],
        ),
    ]
