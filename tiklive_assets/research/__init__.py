"""The official TikTok Research API as a second source: client, paginator, windows, quota ledger, archive, warehouse.

``endpoints`` declares each endpoint once; ``client`` (token, video query, user endpoints) and ``pagination``
(``ResearchPages``) know nothing of storage; ``collect`` drives them window by window against the ``quota`` ledger
and window progress in the state database; ``archive`` names every response's key under ``research-raw/`` (the
bytes go through the archive writer the TikLiveAPI capture uses); ``warehouse`` parses that archive into the
research tables, which are declared and loaded with the others (:mod:`tiklive_assets.warehouse`).
"""
