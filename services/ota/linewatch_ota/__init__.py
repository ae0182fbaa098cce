"""linewatch ota service: firmware catalog, rollouts, the device protocol over MQTT.

Modules:

- ``config``: :class:`OtaConfig`.
- ``signing``: the ed25519 key that signs every image (generated once when absent).
- ``catalog``: streamed, content-addressed, signed uploads; ranged reads; delete rules.
- ``store``: the tables and the one-active-update-per-device index.
- ``statemachine``: legal update transitions, as pure functions.
- ``rollouts``: create / pause / resume / cancel, counts per state.
- ``scheduler``: starts queued updates (priority, then age), retries, auto-pause.
- ``publisher``: the ``metadata`` message devices receive (docs/devices.md).
- ``device_protocol``: ``request`` / ``progress`` / ``verify`` intake, batched.
- ``events``: bounded in-process fan-out for ``StreamOtaEvents``.
- ``api``: the ``linewatch.v1.OtaService`` servicer; ``app``: the process.
- ``download_server``: ranged HTTP downloads over ``ReadFirmware``.
"""
