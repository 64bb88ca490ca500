from __future__ import annotations

from django.urls import path

from loyalty import views

app_name = "loyalty"

urlpatterns = [
    path("", views.programs, name="programs"),
    path("new/", views.program_create, name="program_create"),
    path("preview/", views.preview, name="preview"),
    path("<int:program_id>/", views.program_detail, name="program_detail"),
    path("<int:program_id>/edit/", views.program_edit, name="program_edit"),
    path("<int:program_id>/recompute/", views.program_recompute, name="program_recompute"),
    path("<int:program_id>/switch/", views.program_switch_view, name="program_switch"),
    path("<int:program_id>/delete/", views.program_delete_view, name="program_delete"),
    path("<int:program_id>/jobs/<int:job_id>/", views.program_job, name="program_job"),
    path("contacts/<int:contact_id>/panel/", views.card_panel, name="card_panel"),
    path("<int:program_id>/contacts/<int:contact_id>/pin/", views.pin, name="pin"),
    path("<int:program_id>/contacts/<int:contact_id>/unpin/", views.unpin, name="unpin"),
]
