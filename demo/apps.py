from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo shop: a deterministic data generator (also the benchmark's), ``seed_demo`` and the
    demo users. The top of the layers: it may use every area."""

    name = "demo"
    verbose_name = "Demo data"
