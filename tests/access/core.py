"""Who may open the project-level pages. Each app keeps its own file beside this one."""

from core.roles import ADMIN, MARKETER, SALES


def _job(kind: str = "rule_backfill"):
    from core.models import Job

    return {"job_id": Job.objects.create(kind=kind, title="t", status="done").pk}


def _user():
    from tests.factories import UserFactory

    return {"user_id": UserFactory(username="someone_else", role=MARKETER).pk}


ACCESS = {
    "dashboard": {"roles": {MARKETER, SALES, ADMIN}},
    # the sidebar's language switcher: every role
    "user_language": {"roles": {MARKETER, SALES, ADMIN}, "method": "post"},
    "settings": {"roles": {ADMIN}},
    "api_keys": {"roles": {ADMIN}},
    "api_key_revoke": {"roles": {ADMIN}, "method": "post", "kwargs": lambda: {"key_id": 999999}},
    "users": {"roles": {ADMIN}},
    "user_edit": {"roles": {ADMIN}, "kwargs": _user},
    "user_active": {"roles": {ADMIN}, "method": "post", "kwargs": _user},
    "user_password_reset": {"roles": {ADMIN}, "method": "post", "kwargs": _user},
    "user_delete": {"roles": {ADMIN}, "method": "post", "kwargs": _user},
    # the Jobs pages; "Run again" also needs a role that may start the job's kind (here a rule
    # backfill, which Marketers start; tests/jobs/test_rerun_roles.py covers an Admin-only kind)
    "jobs:list": {"roles": {MARKETER, ADMIN}},
    "jobs:detail": {"roles": {MARKETER, SALES, ADMIN}, "kwargs": _job},
    "jobs:progress": {"roles": {MARKETER, SALES, ADMIN}, "kwargs": _job},
    "jobs:rerun": {"roles": {MARKETER, ADMIN}, "method": "post", "kwargs": _job},
    "jobs:continue": {"roles": {MARKETER, ADMIN}, "method": "post", "kwargs": _job},
    # a job's file: every role reaches the view, which answers 404 to all but the job's starter and
    # admins (tests/contacts/test_export_job.py)
    "jobs:download": {"roles": {MARKETER, SALES, ADMIN}, "kwargs": _job},
}

# Reachable without signing in, by design.
PUBLIC = {"login", "logout", "healthz", "healthz_deep",
          # the emailed one-time password reset link and its "done" page
          "password_reset_confirm", "password_reset_complete"}
