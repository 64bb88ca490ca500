from __future__ import annotations

from django.urls import path

from leads import views

app_name = "leads"

urlpatterns: list = [
    path("hot/", views.hot, name="hot"),
    path("<int:contact_id>/claim/", views.lead_claim_view, name="lead_claim"),
    path("<int:contact_id>/release/", views.lead_release_view, name="lead_release"),
    path("<int:contact_id>/assign/", views.lead_assign_view, name="lead_assign"),
    path("<int:contact_id>/update/", views.lead_update_view, name="lead_update"),
    path("settings/", views.settings_view, name="settings"),
    path("settings/preview/", views.settings_preview, name="settings_preview"),
    path("card/<int:contact_id>/", views.card_panel, name="card_panel"),
    path("card/<int:contact_id>/stage/", views.card_stage, name="card_stage"),
    path("funnels/", views.funnels, name="funnels"),
    path("funnels/bulk-move/", views.funnel_bulk_move, name="funnel_bulk_move"),
    path("funnels/<int:funnel_id>/", views.funnel_detail, name="funnel_detail"),
    path("funnels/<int:funnel_id>/edit/", views.funnel_edit, name="funnel_edit"),
    path("funnels/<int:funnel_id>/delete/", views.funnel_delete, name="funnel_delete"),
    path("model-check/", views.model_check, name="model_check"),
]
