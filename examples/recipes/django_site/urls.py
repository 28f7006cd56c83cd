from django.urls import path

from examples.recipes.django_site.views import signup

urlpatterns = [path("signups", signup)]
