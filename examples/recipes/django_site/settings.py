"""The least a Django site needs to run the recipe: one app, SQLite, no middleware.

Django's database is ``DJANGO_DB`` (a SQLite file); sokka's store is
``SOKKA_DB`` (any store URL: the same SQLite file, or a PostgreSQL
database). They need not be the same database: the enqueue runs after
Django's commit, on sokka's own connection.
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-the-example")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = ["examples.recipes.django_site"]
ROOT_URLCONF = "examples.recipes.django_site.urls"
MIDDLEWARE: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", "django.db"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
