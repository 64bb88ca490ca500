"""Static files storage of production (``MH_PRODUCTION=1``): whitenoise's compressed manifest,
forgiving while ``collectstatic`` has not run.

The manifest storage raises for a name missing from ``staticfiles.json``, so every page that uses
``{% static %}`` answered 500 until someone ran ``collectstatic``. This one falls back to the plain
name (settings then let whitenoise serve from the source folders) and says in the log what to run.
"""

from __future__ import annotations

import logging

from whitenoise.storage import CompressedManifestStaticFilesStorage

logger = logging.getLogger(__name__)


class ForgivingManifestStaticFilesStorage(CompressedManifestStaticFilesStorage):
    manifest_strict = False
    _warned = False

    def stored_name(self, name: str) -> str:
        try:
            return super().stored_name(name)
        except ValueError:
            # With a manifest, a name it lacks is no static file of ours: whitenoise asks about every
            # file it serves (is it a versioned name?), e.g. a licence text beside a bundle.
            if not self.hashed_files and not ForgivingManifestStaticFilesStorage._warned:
                ForgivingManifestStaticFilesStorage._warned = True
                logger.warning(
                    "Static files are not collected (%s has no %s): pages use unversioned URLs. "
                    "Run `python manage.py collectstatic --noinput` at deploy time (`make run` does).",
                    self.location, self.manifest_name,
                )
            return name
