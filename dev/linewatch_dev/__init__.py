"""Development and test tooling for linewatch; never installed in a service image.

Modules:

- ``cli``: the ``linewatch`` command (``up``, ``simulate``, ``broker``, ``ota simulate``,
  ``train``).
- ``train``: ``linewatch train``, fine-tuning a model on a dataset export (torch half in
  ``.venv-model``).
- ``launcher``: ``linewatch up`` / ``make run``, the whole stack on one machine.
- ``broker``: the embedded MQTT broker (amqtt) for laptops without one.
- ``simulator``: a simulated line publishing process curves as telemetry.
- ``ota_simulator``: a fleet of simulated devices that follow the OTA protocol.
- ``curves``: the synthetic curve generator (training, simulator, tests).
- ``testing``: shared test helpers (free ports, a private Mosquitto and PostgreSQL, an
  OTLP receiver, hypothesis corpora).
- ``inference_testing``, ``sync_testing``, ``sync_drills``, ``ota_testing``: helpers for
  the tests and benchmarks of one service each.
"""
