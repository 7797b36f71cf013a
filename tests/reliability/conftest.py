"""The fault suite runs on the gateway tests' real Mosquitto and gateway directories."""

from tests.gateway.conftest import make_broker, make_gateway

__all__ = ["make_broker", "make_gateway"]
