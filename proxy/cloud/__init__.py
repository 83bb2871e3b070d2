"""Clients of the cloud object stores that vipsgate reads sources from and keeps shared
results in: Google Cloud Storage (``gcs.py``) and Azure Blob Storage (``azure.py``).

The ``gs://`` and ``abs://`` sources (``sources/gcs.py``, ``sources/azure.py``) and
the shared tier's ``gcs`` and ``abs`` adapters (``tier/gcs.py``, ``tier/azure.py``)
are built on the same client code; each opens its own instance with its own
credentials, timeouts and pool, as the S3 source and tier do. Their libraries are
optional installs (``vipsgate[gcs]``, ``vipsgate[azure]``), imported only when a
setting needs them (``config/cloud.py`` checks they are there at start-up).
"""
