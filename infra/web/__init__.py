"""The researcher's web view: find scans by quality, look at them, download them.

``create_app`` builds the Flask application over a :class:`~qmroct.web.state.WebState` (ledger
database, object store, caches); ``serve`` runs it under waitress. Served by ``qmroct up`` and on
its own by ``qmroct web``.
"""
