from __future__ import annotations

from django.urls import path

from automation import views

app_name = "automation"

urlpatterns = [
    path("rules/", views.rules, name="rules"),
    path("rules/new/", views.rule_new, name="rule_new"),
    path("rules/install-starter/", views.rules_install_starter, name="rules_install_starter"),
    path("rules/summary/", views.rule_summary, name="rule_summary"),
    path("rules/preview/", views.rule_preview, name="rule_preview"),
    path("rules/condition-row/", views.rule_condition_row, name="rule_condition_row"),
    path("rules/action-row/", views.rule_action_row, name="rule_action_row"),
    path("rules/<int:rule_id>/", views.rule_edit, name="rule_edit"),
    path("rules/<int:rule_id>/toggle/", views.rule_toggle, name="rule_toggle"),
    path("rules/<int:rule_id>/delete/", views.rule_delete, name="rule_delete"),
    path("rules/<int:rule_id>/run/", views.rule_run, name="rule_run"),
    path("changes/", views.changes, name="changes"),
    path("matrices/", views.matrices, name="matrices"),
    path("matrices/new/", views.matrix_new, name="matrix_new"),
    path("matrices/row/", views.matrix_row, name="matrix_row"),
    path("matrices/<int:matrix_id>/", views.matrix_edit, name="matrix_edit"),
    path("matrices/<int:matrix_id>/delete/", views.matrix_delete, name="matrix_delete"),
    path("adhoc/", views.adhoc, name="adhoc"),
    path("events/", views.events, name="events"),
    path("events/retry/", views.events_retry, name="events_retry"),
]
