"""Events live in a table partitioned by month of occurred_at, so old months can be detached and
dropped cheaply. Django's model state is unchanged; the real primary key is (id, occurred_at).

``mh_ensure_event_partitions(from, to)`` creates the missing monthly partitions covering the range;
every writer of events calls it first (ingestion caches the months it has seen).
"""

from django.db import migrations

FORWARD = r"""
DROP TABLE automation_event;
CREATE SEQUENCE automation_event_id_seq AS bigint;
CREATE TABLE automation_event (
    id bigint NOT NULL DEFAULT nextval('automation_event_id_seq'),
    event_id varchar(128) NOT NULL,
    contact_id bigint NOT NULL REFERENCES contacts_contact (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    type varchar(20) NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    properties jsonb NOT NULL DEFAULT '{}'::jsonb,
    value numeric(14, 2),
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
ALTER SEQUENCE automation_event_id_seq OWNED BY automation_event.id;

CREATE INDEX event_contact_time_idx ON automation_event (contact_id, occurred_at DESC);
CREATE INDEX event_type_time_idx ON automation_event (type, occurred_at) INCLUDE (contact_id);
CREATE INDEX event_product_view_category_idx ON automation_event (lower(properties ->> 'category'), occurred_at)
    INCLUDE (contact_id) WHERE type = 'product_view';
CREATE INDEX event_purchase_idx ON automation_event (contact_id, occurred_at) INCLUDE (value) WHERE type = 'purchase';

CREATE OR REPLACE FUNCTION mh_ensure_event_partitions(range_start timestamptz, range_end timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamp := date_trunc('month', range_start AT TIME ZONE 'UTC');
    last_month timestamp := date_trunc('month', range_end AT TIME ZONE 'UTC');
    partition_name text;
    created integer := 0;
BEGIN
    WHILE month_start <= last_month LOOP
        partition_name := format('automation_event_p%s', to_char(month_start, 'YYYYMM'));
        IF to_regclass(partition_name) IS NULL THEN
            PERFORM pg_advisory_xact_lock(hashtext('mh_event_partitions'));
            IF to_regclass(partition_name) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF automation_event FOR VALUES FROM (%L) TO (%L)',
                    partition_name,
                    (month_start AT TIME ZONE 'UTC'),
                    ((month_start + interval '1 month') AT TIME ZONE 'UTC')
                );
                created := created + 1;
            END IF;
        END IF;
        month_start := month_start + interval '1 month';
    END LOOP;
    RETURN created;
END;
$$;

SELECT mh_ensure_event_partitions(now() - interval '13 months', now() + interval '1 month');
"""

BACKWARD = r"""
DROP FUNCTION IF EXISTS mh_ensure_event_partitions(timestamptz, timestamptz);
DROP TABLE automation_event;
CREATE TABLE automation_event (
    id bigserial PRIMARY KEY,
    event_id varchar(128) NOT NULL,
    contact_id bigint NOT NULL REFERENCES contacts_contact (id) DEFERRABLE INITIALLY DEFERRED,
    type varchar(20) NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    properties jsonb NOT NULL,
    value numeric(14, 2)
);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0001_initial"),
        ("contacts", "0001_initial"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
