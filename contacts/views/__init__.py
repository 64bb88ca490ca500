"""The contacts area's screens, one module per screen: ``list`` (the list, its bulk actions and
CSV export), ``card`` (one contact), ``tags`` (the Tags page) and ``imports`` (CSV import).
``contacts/urls.py`` maps each URL to its module."""
