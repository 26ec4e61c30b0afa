"""smsgate inside web frameworks and task queues: Django, Flask, FastAPI, Celery.

Each framework lives in its own subpackage behind its own extra (``pip install
'smsgate[django]'`` and so on), and none is imported here. What they share is in
:mod:`smsgate.integrations.core`: settings in the same keys as ``smsgate.toml``, the senders
(direct, outbox, http, console, memory) and the provider webhook handling, which calls the
providers' own verify-and-parse code.
"""
