"""Ingestion: catalogues into the index through the queue, and what a worker does with each batch.

- :mod:`.enqueue`: the :class:`~.enqueue.Enqueuer` that sends product batches to the queue (CLI, API, ``run``);
- :mod:`.jobs`: following a job to the end, and its summary;
- :mod:`.tracking`: job progress and dead letters in Redis;
- :mod:`.queue`: the Celery app, configured from the settings;
- :mod:`.workers`: starting a worker process, and what it sets up for itself;
- :mod:`.pipeline`: the :class:`~.pipeline.Ingestor` a worker runs on each batch (validate, embed, write);
- :mod:`.indices`: the versioned indices behind the alias (create, ensure, publish, delete).
"""
