"""Demo users printed by `make run` and shown on the login page in development."""

from __future__ import annotations

from core.roles import ADMIN, MARKETER, SALES

DEMO_USERS = [
    {"username": "admin", "password": "admin-demo-2026", "role": ADMIN},
    {"username": "marketer", "password": "marketer-demo-2026", "role": MARKETER},
    {"username": "sales", "password": "sales-demo-2026", "role": SALES},
    {"username": "sales2", "password": "sales2-demo-2026", "role": SALES},
]


def ensure_demo_users() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    User = get_user_model()
    names = {"admin": ("Anna", "Nowak"), "marketer": ("Marta", "Kowalska"), "sales": ("Piotr", "Wiśniewski"), "sales2": ("Kasia", "Zielińska")}
    for spec in DEMO_USERS:
        first, last = names[spec["username"]]
        user, created = User.objects.get_or_create(
            username=spec["username"], defaults={"first_name": first, "last_name": last, "email": f"{spec['username']}@example.com"}
        )
        if created:
            user.set_password(spec["password"])
            user.save()
        user.groups.add(Group.objects.get_or_create(name=spec["role"])[0])
