"""How records reach the gateway: the Mosquitto broker it configures and runs
(:mod:`.broker`) and its MQTT client (:mod:`.mqtt`)."""
