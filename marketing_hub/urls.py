from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from marketing_hub import views
from marketing_hub.api import api, api_unrouted

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("healthz/deep", views.healthz_deep, name="healthz_deep"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("language/", views.user_language, name="user_language"),
    path("settings/", views.settings_home, name="settings"),
    path("settings/api-keys/", views.api_keys, name="api_keys"),
    path("settings/api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("settings/users/", views.users, name="users"),
    path("settings/users/<int:user_id>/", views.user_edit, name="user_edit"),
    path("settings/users/<int:user_id>/active/", views.user_active, name="user_active"),
    path("settings/users/<int:user_id>/password-reset/", views.user_password_reset_send, name="user_password_reset"),
    path("settings/users/<int:user_id>/delete/", views.user_delete_view, name="user_delete"),
    path("reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("reset/done/", views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("api/v1/", api.urls),
    re_path(r"^api/v1/(?P<rest>[\s\S]*)\Z", api_unrouted),  # JSON, not the HTML 404 page
    path("contacts/", include("contacts.urls")),
    path("automation/", include("automation.urls")),
    path("jobs/", include("core.jobs.urls")),
    path("leads/", include("leads.urls")),
    path("segments/", include("segments.urls")),
    path("loyalty/", include("loyalty.urls")),
    path("settings/webhooks/", include("webhooks.urls")),
    path("", include("tracking.urls")),  # /v1/… (Segment-compatible intake) and /settings/sources/
]
