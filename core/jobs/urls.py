from __future__ import annotations

from django.urls import path

from core.jobs import views

app_name = "jobs"

urlpatterns = [
    path("", views.jobs, name="list"),
    path("<int:job_id>/", views.job_detail, name="detail"),
    path("<int:job_id>/progress/", views.job_progress, name="progress"),
    path("<int:job_id>/rerun/", views.job_rerun, name="rerun"),
    path("<int:job_id>/continue/", views.job_continue, name="continue"),
    path("<int:job_id>/download/", views.job_download, name="download"),
]
