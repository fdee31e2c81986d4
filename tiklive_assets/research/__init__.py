"""The official TikTok Research API as a second source: client, paginator, windows, quota ledger, archive, warehouse.

``client`` (token, video query, user endpoints) and ``pagination`` (``ResearchPages``) know nothing of storage;
``collect`` drives them window by window against the ``quota`` ledger and window progress in the state database;
``archive`` writes every response under ``research-raw/``; ``warehouse`` rebuilds the research tables from it.
"""
