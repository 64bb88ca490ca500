"""TEMPORARY: end-to-end ingestion throughput with a real worker (deleted before hand-off)."""
from __future__ import annotations

import json
import os
import random
import time

import pytest
from django.utils import timezone

from automation.starter import install_starter_rules
from tests.conftest import wait_for

TYPES = ["product_view"] * 6 + ["page_view"] * 2 + ["purchase", "email_open", "newsletter_signup", "add_to_cart"]
CATS = ["kurtki", "buty", "sukienki", "spodnie", "torebki", "zegarki", "bizuteria", "sport"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_measure(ingest_api, celery_worker_process):
    from automation.engine import events_status
    from contacts.models import Contact
    install_starter_rules()
    rnd = random.Random(1)
    now = timezone.now().isoformat()
    # existing contacts (steady state: most events are for known people)
    Contact.objects.bulk_create([Contact(email=f"user{i}@example.com") for i in range(20000)])
    batches = []
    n = 0
    for b in range(int(os.environ.get("MEASURE_BATCHES", "20"))):
        items = []
        for i in range(1000):
            t = rnd.choice(TYPES)
            props = {"category": rnd.choice(CATS), "product_id": str(rnd.randrange(9999))} if t == "product_view" else {}
            if t == "purchase":
                props = {"value": rnd.choice([99, 500, 1500]), "currency": "PLN"}
            if t == "page_view":
                props = {"url": rnd.choice(["/diamenty/x", "/buty", "/"])}
            items.append({"event_id": f"m-{n}", "email": f"user{rnd.randrange(20000)}@example.com", "type": t,
                          "occurred_at": now, "properties": props})
            n += 1
        batches.append(json.dumps({"events": items}))
    t0 = time.perf_counter()
    for body in batches:
        r = ingest_api.client.post("/api/v1/events", data=body, content_type="application/json", headers=ingest_api.headers)
        assert r.status_code == 202, r.content
    t1 = time.perf_counter()
    wait_for(lambda: events_status()["pending"] == 0, timeout=300, interval=0.05, message="pending 0")
    t2 = time.perf_counter()
    print(f"\nAPI {n} events: {t1-t0:.2f}s = {n/(t1-t0):.0f}/s; pending 0 after {t2-t0:.2f}s = {n/(t2-t0):.0f} events/s end to end")
