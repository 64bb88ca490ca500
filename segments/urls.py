from __future__ import annotations

from django.urls import path

from segments import views

app_name = "segments"

urlpatterns = [
    path("", views.segment_list, name="list"),
    path("new/", views.segment_create, name="create"),
    path("templates/", views.segment_templates, name="templates"),
    path("overlap/", views.segment_overlap_view, name="overlap"),
    path("builder/editor/", views.builder_editor, name="builder_editor"),
    path("builder/preview/", views.builder_preview, name="builder_preview"),
    path("builder/tags/", views.tag_options, name="tag_options"),
    path("card/<int:contact_id>/", views.card_panel, name="card_panel"),
    path("<int:segment_id>/", views.segment_detail, name="detail"),
    path("<int:segment_id>/edit/", views.segment_edit, name="edit"),
    path("<int:segment_id>/refresh/", views.segment_refresh_now, name="refresh"),
    path("<int:segment_id>/jobs/<int:job_id>/", views.segment_job, name="job"),
    path("<int:segment_id>/export/", views.segment_export, name="export"),
    path("<int:segment_id>/delete/", views.segment_delete, name="delete"),
]
