"""The web console: ``smsgate serve`` mounts it at ``/console`` (``[console]`` in the config).

Operators sign in (console users from ``smsgate users create``, or an API key granted the
console scope) and see the queue, per-provider outcomes and delivery charts, the message log
with each message's whole timeline, and the operations pages: inbound, suppressions, API keys,
webhooks and providers (pause and resume). Pages are server-rendered (Jinja2) and work without
JavaScript; the console's own small script adds live updates over server-sent events.
"""
