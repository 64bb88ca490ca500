from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired

# Machine endpoints authenticate on their own (API keys) or are public by design.
PUBLIC_PREFIXES = ("/api/", "/healthz", "/static/")


class LoginRequiredMiddleware(DjangoLoginRequired):
    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith(PUBLIC_PREFIXES):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)

    def handle_no_permission(self, request, view_func):
        # An HTMX fragment request after the session expired: send the whole page to the login.
        if request.headers.get("HX-Request") == "true":
            from django.http import HttpResponse
            from django.urls import reverse

            response = HttpResponse(status=204)
            response["HX-Redirect"] = f"{reverse('login')}?next={request.headers.get('HX-Current-URL', '/')}"
            return response
        return super().handle_no_permission(request, view_func)
