"""Corpora: multitrack sessions on disk, read into the store incrementally.

- :mod:`~stemstore.corpus.ingest`: the ingest stage (file stamps, staleness, batched writes);
- one module per corpus format, each turning a folder into multitrack specs:
  :mod:`~stemstore.corpus.medleydb` (MedleyDB YAML metadata) and
  :mod:`~stemstore.corpus.folder` (one folder per session, ``raw/`` and ``stems/``).
"""
