from __future__ import annotations

from django.urls import path

from leads import notification_views, views

app_name = "leads"

urlpatterns: list = [
    path("hot/", views.hot, name="hot"),
    path("hot/seen/", views.hot_seen, name="hot_seen"),
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
    path("notifications/", notification_views.notifications, name="notifications"),
    path("notifications/bell/", notification_views.notification_bell, name="notification_bell"),
    path("notifications/<int:notification_id>/read/", notification_views.notification_read, name="notification_read"),
    path("notifications/read-all/", notification_views.notifications_read_all, name="notifications_read_all"),
    path("alerts/settings/", notification_views.alert_settings, name="alert_settings"),
    path("alerts/unsubscribe/<str:token>/", notification_views.alerts_unsubscribe, name="alerts_unsubscribe"),
]
