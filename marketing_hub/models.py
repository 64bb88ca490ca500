"""The shell's models: the audit trail of people (API keys live in ``core.models``) and each
person's preferences (the interface language).

Who created, edited, switched off, reset the password of or deleted a user, and who gave or took a
role, is kept by pghistory triggers on proxies of Django's own tables (``auth_user`` and its
groups), like every other settings change; the Users page reads it. Password hashes are never
copied into the history: only the fact that the password changed is."""

from __future__ import annotations

import pghistory
from django.conf import settings
from django.contrib.auth.models import User
from django.db import models
from django.utils.translation import gettext_lazy

USER_FIELDS = ["username", "first_name", "last_name", "email", "is_active"]


@pghistory.track(
    pghistory.InsertEvent("created"),
    pghistory.UpdateEvent("changed", condition=pghistory.AnyChange(*USER_FIELDS)),
    pghistory.UpdateEvent("password_changed", condition=pghistory.AnyChange("password")),
    pghistory.ManualEvent("password_reset_sent"),
    pghistory.DeleteEvent("deleted"),
    fields=USER_FIELDS,
    model_name="UserEvent",
)
class AuditedUser(User):
    class Meta:
        proxy = True


@pghistory.track(
    pghistory.InsertEvent("role_given"),
    pghistory.DeleteEvent("role_taken"),
    obj_field=None,
    model_name="UserRoleEvent",
)
class AuditedUserGroup(User.groups.through):  # type: ignore[name-defined]  # Django's generated through model
    class Meta:
        proxy = True


class UserPreference(models.Model):
    """A person's own settings. ``language`` "" follows the browser (Accept-Language); "en"/"pl"
    override it on every device once signed in (``marketing_hub.middleware.UserLanguageMiddleware``)."""

    LANGUAGE_CHOICES = [("", gettext_lazy("As the browser says")), *settings.LANGUAGES]

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference")
    language = models.CharField(max_length=8, blank=True, default="", choices=LANGUAGE_CHOICES)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.language or 'browser'}"
