"""The tables kept beside the outbox's messages, each owned by a module of the store layer.

Every module here turns its tables' rows into typed records and back, on the outbox engine's
transactions; the server, the console, the CLI and verify call these methods and never see a
transaction or a statement. See docs/architecture.md, *Layers*.
"""
