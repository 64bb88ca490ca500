"""Who may use the contacts area's pages (Admin always may)."""

from core.roles import ADMIN, MARKETER, SALES


def _contact():
    from tests.factories import ContactFactory

    return ContactFactory()


def _contact_kwargs():
    return {"contact_id": _contact().pk}


def _contact_tag_kwargs():
    from tests.factories import give_tag

    link = give_tag(_contact(), "matrix-tag", 2)
    return {"contact_id": link.contact_id, "tag_id": link.tag_id}


def _tag_kwargs():
    from tests.factories import TagFactory

    return {"tag_id": TagFactory(name="matrix-only").pk}


def _note_kwargs():
    from contacts.models import Note

    note = Note.objects.create(contact=_contact(), text="hello")
    return {"contact_id": note.contact_id, "note_id": note.pk}


def _import_kwargs():
    from contacts.models import ContactImport

    return {"import_id": ContactImport.objects.create(filename="x.csv", content="email\n", header=["email"]).pk}


def _job_kwargs():
    from core.models import Job

    return {"job_id": Job.objects.create(kind="contacts_bulk", title="bulk").pk}


BOTH = {MARKETER, SALES}

ACCESS = {
    "contacts:list": {"roles": BOTH},
    "contacts:bulk": {"roles": {MARKETER}, "method": "post"},
    "contacts:bulk_status": {"roles": {MARKETER}, "kwargs": _job_kwargs},
    # starts the CSV export job (the file is downloaded from the job's page: jobs:download)
    "contacts:export": {"roles": {MARKETER}, "method": "post"},
    "contacts:tags": {"roles": {MARKETER}},
    "contacts:tag_autocomplete": {"roles": BOTH},
    "contacts:tag_stats_recount": {"roles": {MARKETER}, "method": "post"},
    "contacts:tag_dialog": {"roles": {MARKETER}, "kwargs": lambda: {**_tag_kwargs(), "kind": "merge"}},
    "contacts:tag_edit": {"roles": {MARKETER}, "method": "post", "kwargs": _tag_kwargs},
    "contacts:tag_merge": {"roles": {MARKETER}, "method": "post", "kwargs": _tag_kwargs},
    "contacts:tag_delete": {"roles": {MARKETER}, "method": "post", "kwargs": _tag_kwargs},
    "contacts:import": {"roles": {MARKETER}},
    "contacts:import_detail": {"roles": {MARKETER}, "kwargs": _import_kwargs},
    "contacts:import_status": {"roles": {MARKETER}, "kwargs": _import_kwargs},
    "contacts:import_errors": {"roles": {MARKETER}, "kwargs": _import_kwargs},
    "contacts:card": {"roles": BOTH, "kwargs": _contact_kwargs},
    "contacts:card_tag_add": {"roles": {MARKETER}, "method": "post", "kwargs": _contact_kwargs},
    "contacts:card_tag_change": {"roles": {MARKETER}, "method": "post", "kwargs": _contact_tag_kwargs},
    "contacts:card_tag_history": {"roles": BOTH, "kwargs": _contact_tag_kwargs},
    "contacts:card_timeline": {"roles": BOTH, "kwargs": _contact_kwargs},
    "contacts:card_note_add": {"roles": BOTH, "method": "post", "kwargs": _contact_kwargs},
    # Someone else's note is a 404 (only the author, or Admin, edits it).
    "contacts:card_note_edit": {"roles": BOTH, "kwargs": _note_kwargs},
    # Sales only for leads nobody else holds: tests/contacts/test_owner_holder.py (horizontal access).
    "contacts:card_owner": {"roles": BOTH, "method": "post", "kwargs": _contact_kwargs},
    "contacts:card_consent": {"roles": {MARKETER}, "method": "post", "kwargs": _contact_kwargs},
    "contacts:card_export": {"roles": {MARKETER}, "kwargs": _contact_kwargs},
    "contacts:card_erase": {"roles": {ADMIN}, "method": "post", "kwargs": _contact_kwargs},  # GDPR erasure: admins only
}
