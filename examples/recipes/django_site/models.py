"""The site's own data: one row per signup."""

from django.db import models


class Signup(models.Model):
    email = models.CharField(max_length=320, unique=True)
