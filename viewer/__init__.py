"""Websocket feed, REST API and the live browser viewer."""
