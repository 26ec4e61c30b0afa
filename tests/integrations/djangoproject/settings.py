"""A small Django project driven by the integration tests (Django's test client, real SQLite)."""

from __future__ import annotations

SECRET_KEY = "smsgate-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
# Django sets the process time zone (os.environ["TZ"]) from this: keep the rest of the suite on UTC
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "smsgate.integrations.django",
    "tests.integrations.djangoproject.shop",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "tests.integrations.djangoproject.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# The tests give each test its own store with override_settings(SMSGATE=...).
SMSGATE = {"backend": "console"}
SMSPM_SENDER = "MyApp"
