"""Delivery: the stream's event vocabulary, a turn's running control and outcome, the event-stream response
that writes server-sent events, the resumable-stream log, the stop bus, and the server hooks (the one package
that knows uvicorn). Imports nothing from chat."""
