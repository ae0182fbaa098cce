"""linewatch sync service: mirrors image URLs received over MQTT into a local cache.

Modules, outside in::

    app         the process: wires everything, runs until stopped
    config      SyncConfig (LINEWATCH_SYNC__<KEY>)
    intake      MQTT messages and API requests → validated, durably queued jobs
    urls        payload formats, canonical URLs, cache paths
    api         linewatch.v1.SyncService (gRPC)
    worker      claim → download → record, with bounded concurrency
    downloader  one HTTP download: resume, checks, atomic move into the cache
    cachefs     the cache directory: safe paths, atomic writes, streaming reads
    store       the job table and its queue operations
    metrics     Prometheus metrics
"""
