from __future__ import annotations

import hashlib
import re

import pghistory
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchQuery, SearchVector, SearchVectorField
from django.db import connection, models, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from contacts.signals import TAG_CHANGES, contacts_changed_send
from core.validators import ANONYMOUS_DOMAIN

_WHITESPACE = re.compile(r"\s+")


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def normalize_tag_name(name: str) -> str:
    """Trimmed, inner whitespace collapsed: the spelling a new tag is created with."""
    return _WHITESPACE.sub(" ", (name or "").strip())


def tag_key(name: str) -> str:
    """The case-insensitive identity of a tag name."""
    return normalize_tag_name(name).lower()


def email_hash(email: str) -> str:
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()


# The search document of a contact is a stored generated column (``search_document``): its email
# split at punctuation plus its names, as words. Built-in full-text search, because the embedded
# PostgreSQL ships no pg_trgm; stored rather than an expression index so that a list walking the
# score index checks each row's words without re-parsing them (measured: 5× faster at 1M contacts),
# and a GIN index answers rare words directly.
_SEARCH_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _dependents_refresh(contact_ids: list[int]) -> None:
    """Tiers and saved-segment memberships follow a manual tag edit at once, in its transaction
    (``contacts_changed``, as after each batch of the rules engine)."""
    contacts_changed_send(contact_ids, sender=Contact, changes=TAG_CHANGES)


def search_tsquery(text: str) -> str:
    """A raw tsquery matching every word of ``text`` as a prefix: ``"Jan Kow"`` → ``jan:* & kow:*``."""
    words = _SEARCH_WORD.findall((text or "").lower())[:8]
    return " & ".join(f"{word}:*" for word in words)


# Anonymous profiles: what a tracked visitor did before any identify named them. A profile is a
# contact row (rules, tags and scores apply to it as to anyone) with ``is_anonymous`` set and an
# address under a reserved domain (RFC 2606 ``.invalid``: no real address can take it). It stays out
# of every list, count, segment, export and webhook (``Contact.objects`` does not see it) until it
# merges into the contact its visitor identifies as.
def anonymous_email(kind: str, value: str) -> str:
    """The address of the anonymous profile of a tracked id (``user`` or ``anonymous`` kind)."""
    digest = hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:32]
    return f"{digest}@{ANONYMOUS_DOMAIN}"


class ContactQuerySet(models.QuerySet):
    def search(self, text: str) -> ContactQuerySet:
        """Contacts having every word of ``text`` as a word prefix (email parts, first or last name)."""
        query = search_tsquery(text)
        if not query:
            return self
        return self.filter(search_document=SearchQuery(query, config="simple", search_type="raw"))

    def ids_sql(self) -> tuple[str, tuple]:
        """This queryset's contact ids as SQL (for ``INSERT … SELECT`` bulk work, never loaded)."""
        return self.order_by().values("id").query.sql_with_params()

    def add_tag(self, name: str, score: int = 1, *, user=None, source: str = "bulk") -> int:
        """Add ``score`` to tag ``name`` on every contact of the queryset, set-based. → contacts changed."""
        from contacts.scoring import tag_scores_add_selected  # local import: contacts.scoring imports this module

        return self._tag_scores_write(name, tag_scores_add_selected, delta=score, source=source, user=user)

    def set_tag_score(self, name: str, score: int, *, user=None, source: str = "bulk") -> int:
        """Set tag ``name`` to exactly ``score`` on every contact of the queryset (≤ 0 removes it),
        set-based and recorded in the score history. → contacts changed."""
        from contacts.scoring import tag_scores_set_selected  # local import: contacts.scoring imports this module

        return self._tag_scores_write(name, tag_scores_set_selected, score=score, source=source, user=user)

    def _tag_scores_write(self, name: str, write, *, source: str, user, **change) -> int:
        """Run ``write`` (a ``contacts.scoring`` set-based writer) for tag ``name``, created if new,
        over this queryset's contacts, in one transaction."""
        from contacts.scoring import tags_ensure  # local import: contacts.scoring imports this module

        if not tag_key(name):
            raise ValueError("A tag name must not be empty.")
        sql, params = self.ids_sql()
        with transaction.atomic(), connection.cursor() as cursor:
            tag_id = tags_ensure(cursor, [name])[name]
            return write(cursor, contacts_sql=sql, contacts_params=params, tag_id=tag_id, source=source,
                         user_id=getattr(user, "pk", None), **change)

    def remove_tag(self, name: str, *, user=None, source: str = "bulk") -> int:
        """Remove tag ``name`` from every contact of the queryset, set-based. → contacts changed."""
        from contacts.scoring import tag_remove_selected  # local import: contacts.scoring imports this module

        tag = Tag.objects.filter(key=tag_key(name)).first()
        if tag is None:
            return 0
        sql, params = self.ids_sql()
        with transaction.atomic(), connection.cursor() as cursor:
            return tag_remove_selected(
                cursor, contacts_sql=sql, contacts_params=params, tag_id=tag.pk, source=source,
                user_id=getattr(user, "pk", None),
            )

    def assign_owner(self, owner) -> int:
        """Set the owner (a Sales user or None) of every contact; the audit trigger records each."""
        return self.exclude(owner=owner).update(owner=owner, updated_at=timezone.now())


class KnownContactManager(models.Manager.from_queryset(ContactQuerySet)):  # type: ignore[misc]
    """Contacts without anonymous profiles."""

    def get_queryset(self) -> ContactQuerySet:
        return super().get_queryset().filter(is_anonymous=False)


@pghistory.track(
    pghistory.UpdateEvent("owner_changed", condition=pghistory.AnyChange("owner")),
    fields=["owner"],
    model_name="ContactOwnerEvent",
)
class Contact(models.Model):
    class LeadStatus(models.TextChoices):
        NEW = "new", _("New")
        CONTACTED = "contacted", _("Contacted")
        QUALIFIED = "qualified", _("Qualified")
        WON = "won", _("Won")
        LOST = "lost", _("Lost")

    email = models.CharField(max_length=254, unique=True, help_text="Stored trimmed and lower-case.")
    first_name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    phone = models.CharField(max_length=40, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="", help_text="ISO 3166-1 alpha-2, upper-case.")
    city = models.CharField(max_length=100, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    # No index of its own: contact_owned_score_idx (owner, -score, partial) serves owner look-ups, and every
    # index on this table is paid for on each contact row the rules engine rewrites.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_contacts",
        db_index=False,
    )
    # The lead score, maintained from the ledger (leads.ScoreChange) in the same statement batch.
    score = models.IntegerField(default=0)
    lead_status = models.CharField(max_length=12, choices=LeadStatus.choices, default=LeadStatus.NEW)
    lead_status_reason = models.TextField(blank=True, default="")
    lead_status_changed_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    search_document = models.GeneratedField(
        expression=SearchVector(
            models.Func(models.F("email"), models.Value("@._+-"), models.Value("     "), function="translate",
                        output_field=models.TextField()),
            "first_name", "last_name", config="simple",
        ),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    # Whether this is an anonymous profile (see ``anonymous_email``).
    is_anonymous = models.BooleanField(default=False, db_default=False)

    # ``objects``: contacts people work with; ``all_objects`` also sees anonymous profiles (the
    # tracking intake, admins' "include anonymous visitors" list, related-object access).
    objects = KnownContactManager()
    all_objects = ContactQuerySet.as_manager()

    class Meta:
        base_manager_name = "all_objects"
        indexes = [
            # The (few) anonymous profiles: counts that never read the contacts table exclude them
            # through this index, and the retention purge finds them by it.
            models.Index(fields=["last_activity_at"], name="contact_anonymous_idx",
                         condition=models.Q(is_anonymous=True), include=["id"]),
            models.Index(fields=["-score", "id"], name="contact_score_idx"),
            # Partial: only owned contacts and leads past "new" are ever looked up this way, and a
            # row version outside an index's predicate costs that index nothing — the rules engine
            # rewrites thousands of (mostly unowned, new) contacts a second.
            models.Index(fields=["owner", "-score"], name="contact_owned_score_idx",
                         condition=models.Q(owner__isnull=False)),
            models.Index(fields=["country", "city"], name="contact_country_city_idx"),
            # Covering (id, city: an expression index is index-only only with its column included):
            # the list's capped count of a city filter then reads exactly the rows it counts; without
            # it the planner scanned (country, city) past every city sorting before the one asked
            # for (~50 ms at 1M contacts, 200 ms with a stale visibility map; now < 1 ms).
            models.Index(Lower("city"), name="contact_city_lower_idx", include=["id", "city"]),
            models.Index(fields=["birth_date"], name="contact_birth_date_idx"),
            models.Index(fields=["lead_status", "-score"], name="contact_worked_status_idx",
                         condition=~models.Q(lead_status="new")),
            # Keyset pagination of "recently active first" and "newest first" (ties broken by id); they
            # also serve range filters on last_activity_at (inactive_days) and created_at.
            models.Index(
                models.F("last_activity_at").desc(nulls_last=True), models.F("id").desc(),
                name="contact_activity_id_idx",
            ),
            models.Index(models.F("created_at").desc(), models.F("id").desc(), name="contact_created_id_idx"),
            GinIndex(fields=["search_document"], name="contact_search_document_idx"),
        ]

    def __str__(self) -> str:
        return self.email

    def add_tag(self, name: str, score: int = 1, *, user=None, source: str = "manual") -> int:
        """Add ``score`` to tag ``name`` (created if new); a result ≤ 0 removes it. → the new score (0: removed)."""
        from contacts.scoring import tag_scores_add, tags_ensure  # local import: contacts.scoring imports this module

        if not tag_key(name):
            raise ValueError("A tag name must not be empty.")
        with transaction.atomic(), connection.cursor() as cursor:
            tag_id = tags_ensure(cursor, [name])[name]
            tag_scores_add(
                cursor, contact_ids=[self.pk], tag_ids=[tag_id], deltas=[score], source=source,
                user_id=getattr(user, "pk", None),
            )
            cursor.execute(
                "SELECT score FROM contacts_contacttag WHERE contact_id = %s AND tag_id = %s", [self.pk, tag_id]
            )
            row = cursor.fetchone()
            _dependents_refresh([self.pk])
        return row[0] if row else 0

    def set_tag_score(self, name: str, score: int, *, user=None, source: str = "manual") -> int:
        """Set tag ``name`` to exactly ``score`` (created if new; ≤ 0 removes it), recorded in the
        score history as the difference. → the new score (0: removed)."""
        from contacts.scoring import tag_scores_set_selected, tags_ensure  # local import: scoring imports this module

        if not tag_key(name):
            raise ValueError("A tag name must not be empty.")
        with transaction.atomic(), connection.cursor() as cursor:
            tag_id = tags_ensure(cursor, [name])[name]
            changed = tag_scores_set_selected(
                cursor, contacts_sql="SELECT %s::bigint", contacts_params=[self.pk], tag_id=tag_id, score=score,
                source=source, user_id=getattr(user, "pk", None),
            )
            if changed:
                _dependents_refresh([self.pk])
        return max(score, 0)

    def remove_tag(self, name: str, *, user=None, source: str = "manual") -> bool:
        """Remove tag ``name`` (recorded in the score history). → whether the contact had it."""
        from contacts.scoring import tag_remove  # local import: contacts.scoring imports this module

        tag = Tag.objects.filter(key=tag_key(name)).first()
        if tag is None:
            return False
        with transaction.atomic(), connection.cursor() as cursor:
            removed = bool(
                tag_remove(cursor, contact_ids=[self.pk], tag_ids=[tag.pk], source=source,
                           user_id=getattr(user, "pk", None))
            )
            if removed:
                _dependents_refresh([self.pk])
        return removed

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@pghistory.track(
    pghistory.UpdateEvent("changed", condition=pghistory.AnyChange("name", "description", "colour")),
    pghistory.DeleteEvent("deleted"),
    pghistory.ManualEvent("merged"),
    fields=["name", "key", "description", "colour"],
    model_name="TagEvent",
)
class Tag(models.Model):
    name = models.CharField(max_length=100, help_text="The spelling the tag was first created with.")
    key = models.CharField(max_length=100, unique=True, help_text="Lower-case name: tags match case-insensitively.")
    description = models.TextField(blank=True, default="")
    colour = models.CharField(max_length=7, blank=True, default="", help_text="#rrggbb")
    # Optional tag-score decay: scores halve every ``half_life_days`` (leads.tasks applies it).
    half_life_days = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ContactTag(models.Model):
    """A tag on a contact with its score. The composite key is the natural one."""

    pk = models.CompositePrimaryKey("contact_id", "tag_id")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="contact_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="contact_tags")
    score = models.IntegerField(default=1)
    first_assigned_at = models.DateTimeField(default=timezone.now)
    last_assigned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["tag", "score"], include=["contact"], name="contacttag_tag_score_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}:{self.tag_id}={self.score}"


# The score bands of the Tags page's distribution chart; TagStats.score_bands counts contact-tags
# in each, in this order.
SCORE_BANDS = ["1", "2", "3", "4", "5–9", "10–19", "20+"]


class TagStats(models.Model):
    """How many contacts carry a tag and how strongly, as counted at ``computed_at``.

    Counting 8M contact-tags takes seconds, too long for every view of the Tags page, and keeping
    counters current would make every ingestion batch lock the popular tags' rows. So large
    databases read this snapshot, which the worker recounts every few minutes or on request
    (contacts.services.tag_stats_refresh); small ones count live."""

    tag = models.OneToOneField(Tag, on_delete=models.CASCADE, primary_key=True, related_name="stats")
    contact_count = models.BigIntegerField(default=0)
    total_score = models.BigIntegerField(default=0)
    score_bands = ArrayField(models.BigIntegerField(), size=len(SCORE_BANDS), default=list)
    computed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.tag_id}: {self.contact_count} contacts at {self.computed_at:%Y-%m-%d %H:%M}"


class TagScoreChange(models.Model):
    """Every change of a tag score on a contact: by whom or by which rule, how much, when."""

    class Source(models.TextChoices):
        MANUAL = "manual", _("Manual")
        BULK = "bulk", _("Bulk action")
        RULE = "rule", _("Rule")
        IMPORT = "import", _("Import")
        API = "api", "API"
        MERGE = "merge", _("Tag merge")
        DECAY = "decay", _("Decay")
        REMOVED = "removed", _("Removed")

    # Written for every tag change by a rule: the contact's look-ups use tagchange_contact_tag_idx
    # (it starts with contact), and the user's index is partial (most changes have no user).
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="tag_score_changes", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="score_changes")
    delta = models.IntegerField()
    score_after = models.IntegerField(help_text="0 when the tag was removed.")
    source = models.CharField(max_length=10, choices=Source.choices)
    # A plain id, not a foreign key: contacts must not depend on automation's tables, and the
    # history keeps the id of a rule that was deleted since.
    rule_id = models.BigIntegerField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, db_index=False)
    event_pk = models.BigIntegerField(null=True, blank=True, help_text="automation.Event id that caused it.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["contact", "tag", "-created_at"], name="tagchange_contact_tag_idx"),
            models.Index(fields=["event_pk"], name="tagchange_event_idx", condition=models.Q(event_pk__isnull=False)),
            models.Index(fields=["user"], name="tagchange_user_idx", condition=models.Q(user__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}:{self.tag_id} {self.delta:+d} → {self.score_after}"


class Note(models.Model):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["contact", "-created_at"], name="note_contact_idx")]

    def __str__(self) -> str:
        return self.text[:50]


# The channels the screens offer (the API accepts any channel name, see contacts.services.clean_channel).
CONSENT_CHANNELS = ("email", "sms", "phone", "push")
# How the screens name the channels; a channel the API added beyond these is shown as it is.
CONSENT_CHANNEL_LABELS = {
    "email": pgettext_lazy("consent channel", "Email"), "sms": pgettext_lazy("consent channel", "SMS"),
    "phone": pgettext_lazy("consent channel", "Phone"), "push": pgettext_lazy("consent channel", "Push"),
}


class Consent(models.Model):
    """The current consent state of one channel for one contact."""

    pk = models.CompositePrimaryKey("contact_id", "channel")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=32)
    granted = models.BooleanField()
    source = models.CharField(max_length=100, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["channel", "granted"], include=["contact"], name="consent_channel_idx")]

    def __str__(self) -> str:
        return f"{self.channel}={self.granted}"


class ConsentChange(models.Model):
    """Append-only history of consent: what, when and where it was given or withdrawn (GDPR)."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consent_changes")
    channel = models.CharField(max_length=32)
    granted = models.BooleanField()
    source = models.CharField(max_length=100, blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["contact", "-created_at"], name="consentchange_contact_idx")]

    def __str__(self) -> str:
        return f"{self.channel}={self.granted} ({self.source})"


class Suppression(models.Model):
    """An erased contact's email hash: ingestion does not silently re-create it without new consent."""

    email_hash = models.CharField(max_length=64, primary_key=True)
    created_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=100, default="gdpr_erasure")

    def __str__(self) -> str:
        return self.email_hash


class ContactImport(models.Model):
    """An uploaded CSV file, its column mapping and the outcome of importing it."""

    class Status(models.TextChoices):
        UPLOADED = "uploaded", _("Waiting for column mapping")
        QUEUED = "queued", _("Importing")
        DONE = "done", _("Imported")
        FAILED = "failed", _("Failed")

    filename = models.CharField(max_length=255)
    content = models.TextField(help_text="The file's text (UTF-8).")
    header = models.JSONField(default=list)
    mapping = models.JSONField(default=dict, blank=True, help_text="target field → column index")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UPLOADED)
    # A plain id: automation depends on contacts, so contacts must not depend on automation's tables.
    job_id = models.BigIntegerField(null=True, blank=True)
    total_rows = models.IntegerField(default=0)
    imported_rows = models.IntegerField(default=0)
    error_rows = models.IntegerField(default=0)
    # [[row number in the file, column, problem], …] — the downloadable error report.
    errors = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.filename


# What contacts did. The table keeps the name it was created with (automation_event).
EVENT_TYPES = [
    "page_view",
    "product_view",
    "add_to_cart",
    "cart_abandon",
    "purchase",
    "email_open",
    "email_click",
    "form_submit",
    "newsletter_signup",
    "custom",
]
# Human labels, translated when shown (lazy); the type names themselves are identifiers.
EVENT_TYPE_LABELS = {
    "page_view": _("Page view"),
    "product_view": _("Product view"),
    "add_to_cart": _("Add to cart"),
    "cart_abandon": _("Cart abandon"),
    "purchase": _("Purchase"),
    "email_open": _("Email open"),
    "email_click": _("Email click"),
    "form_submit": _("Form submit"),
    "newsletter_signup": _("Newsletter signup"),
    "custom": _("Custom"),
}
EVENT_TYPE_CHOICES = [(name, EVENT_TYPE_LABELS[name]) for name in EVENT_TYPES]
# Written by the system, never sent, nor processed by rules: the timeline entry of a visitor's merge.
SYSTEM_EVENT_TYPE_CHOICES = [("visitor_merged", _("Anonymous visitor merged"))]


class Event(models.Model):
    """A behavioural event. The table is partitioned by month of ``occurred_at`` (see migration
    0002); the real primary key is (id, occurred_at), which Django does not need to know."""

    event_id = models.CharField(max_length=128)
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="events", db_constraint=True)
    type = models.CharField(max_length=20, choices=EVENT_TYPE_CHOICES + SYSTEM_EVENT_TYPE_CHOICES)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    properties = models.JSONField(default=dict, blank=True)
    # properties.value of a purchase, copied out for fast sums (purchase_total, RFM, loyalty).
    value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)

    class Meta:
        managed = True
        db_table = "automation_event"
        ordering = ["-occurred_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class ProfileMerge(models.Model):
    """An anonymous profile waiting for the worker to merge it into a contact
    (``contacts.merging.profiles_merge_due``). Plain ids: the merge itself checks that both
    still exist (a merge asked twice, or a contact erased meanwhile, does nothing)."""

    profile_id = models.BigIntegerField(primary_key=True)
    contact_id = models.BigIntegerField()
    label = models.CharField(max_length=200, blank=True, default="", help_text="The visitor id the timeline names.")
    requested_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["requested_at"], name="profilemerge_requested_idx")]

    def __str__(self) -> str:
        return f"{self.profile_id} → {self.contact_id}"
