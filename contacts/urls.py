from __future__ import annotations

from django.urls import path

from contacts.views import card, imports, tags
from contacts.views import list as contact_list

app_name = "contacts"

urlpatterns = [
    path("", contact_list.contact_list, name="list"),
    path("bulk/", contact_list.contact_bulk, name="bulk"),
    path("bulk/jobs/<int:job_id>/", contact_list.bulk_status, name="bulk_status"),
    path("export/", contact_list.contact_export, name="export"),
    path("tags/", tags.tag_list, name="tags"),
    path("tags/autocomplete/", tags.tag_autocomplete, name="tag_autocomplete"),
    path("tags/recount/", tags.tag_stats_recount, name="tag_stats_recount"),
    path("tags/<int:tag_id>/edit/", tags.tag_edit, name="tag_edit"),
    path("tags/<int:tag_id>/dialog/<str:kind>/", tags.tag_dialog, name="tag_dialog"),
    path("tags/<int:tag_id>/merge/", tags.tag_merge_view, name="tag_merge"),
    path("tags/<int:tag_id>/delete/", tags.tag_delete_view, name="tag_delete"),
    path("import/", imports.import_upload, name="import"),
    path("import/<int:import_id>/", imports.import_detail, name="import_detail"),
    path("import/<int:import_id>/status/", imports.import_status, name="import_status"),
    path("import/<int:import_id>/errors.csv", imports.import_errors, name="import_errors"),
    path("<int:contact_id>/", card.contact_card, name="card"),
    path("<int:contact_id>/tags/", card.card_tag_add, name="card_tag_add"),
    path("<int:contact_id>/tags/<int:tag_id>/", card.card_tag_change, name="card_tag_change"),
    path("<int:contact_id>/tags/<int:tag_id>/history/", card.card_tag_history, name="card_tag_history"),
    path("<int:contact_id>/timeline/", card.card_timeline, name="card_timeline"),
    path("<int:contact_id>/notes/", card.card_note_add, name="card_note_add"),
    path("<int:contact_id>/notes/<int:note_id>/", card.card_note_edit, name="card_note_edit"),
    path("<int:contact_id>/owner/", card.card_owner_set, name="card_owner"),
    path("<int:contact_id>/consents/", card.card_consent_set, name="card_consent"),
    path("<int:contact_id>/export.json", card.card_export_json, name="card_export"),
    path("<int:contact_id>/erase/", card.card_erase, name="card_erase"),
]
