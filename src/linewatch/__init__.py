"""linewatch: machine process data off MQTT, scored in real time."""
