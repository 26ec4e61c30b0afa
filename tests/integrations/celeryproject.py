"""The Celery app the integration tests' worker processes run (configured from the environment
the test gives them: Redis URL, a key prefix of the test's own, the provider URL)."""

from __future__ import annotations

import os

from celery import Celery

redis_url = os.environ.get("SMSGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
prefix = os.environ.get("SMSGATE_TEST_CELERY_PREFIX", "smsgate-test:")

app = Celery("smsgate_tests", include=["smsgate.integrations.celery"])
app.conf.update(
    broker_url=redis_url,
    result_backend=redis_url,
    # Every key under the test's own prefix: engineers and CI jobs share one Redis.
    broker_transport_options={
        "global_keyprefix": prefix,
        # A killed worker's message is handed out again after 2 s, looked for every second.
        "visibility_timeout": 2,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    result_backend_transport_options={"global_keyprefix": prefix},
    task_default_queue=prefix + "sms",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    smsgate={
        "providers": {
            "sms": {
                "url": os.environ.get(
                    "SMSGATE_TEST_PROVIDER_URL",
                    "twilio://AC00000000000000000000000000000000:unset@+15005550006",
                )
            }
        }
    },
    smsgate_ledger_url=redis_url,
    smsgate_claim_timeout=1,
)
