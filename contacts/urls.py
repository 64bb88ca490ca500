from __future__ import annotations

from django.urls import path

from contacts import views

app_name = "contacts"

urlpatterns = [
    path("", views.contact_list, name="list"),
    path("bulk/", views.contact_bulk, name="bulk"),
    path("bulk/jobs/<int:job_id>/", views.bulk_status, name="bulk_status"),
    path("export.csv", views.contact_export_csv, name="export"),
    path("tags/", views.tag_list, name="tags"),
    path("tags/autocomplete/", views.tag_autocomplete, name="tag_autocomplete"),
    path("tags/recount/", views.tag_stats_recount, name="tag_stats_recount"),
    path("tags/<int:tag_id>/edit/", views.tag_edit, name="tag_edit"),
    path("tags/<int:tag_id>/dialog/<str:kind>/", views.tag_dialog, name="tag_dialog"),
    path("tags/<int:tag_id>/merge/", views.tag_merge_view, name="tag_merge"),
    path("tags/<int:tag_id>/delete/", views.tag_delete_view, name="tag_delete"),
    path("import/", views.import_upload, name="import"),
    path("import/<int:import_id>/", views.import_detail, name="import_detail"),
    path("import/<int:import_id>/status/", views.import_status, name="import_status"),
    path("import/<int:import_id>/errors.csv", views.import_errors, name="import_errors"),
    path("<int:contact_id>/", views.contact_card, name="card"),
    path("<int:contact_id>/tags/", views.card_tag_add, name="card_tag_add"),
    path("<int:contact_id>/tags/<int:tag_id>/", views.card_tag_change, name="card_tag_change"),
    path("<int:contact_id>/tags/<int:tag_id>/history/", views.card_tag_history, name="card_tag_history"),
    path("<int:contact_id>/timeline/", views.card_timeline, name="card_timeline"),
    path("<int:contact_id>/notes/", views.card_note_add, name="card_note_add"),
    path("<int:contact_id>/notes/<int:note_id>/", views.card_note_edit, name="card_note_edit"),
    path("<int:contact_id>/owner/", views.card_owner_set, name="card_owner"),
    path("<int:contact_id>/consents/", views.card_consent_set, name="card_consent"),
    path("<int:contact_id>/export.json", views.card_export_json, name="card_export"),
    path("<int:contact_id>/erase/", views.card_erase, name="card_erase"),
]
