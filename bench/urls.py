"""The bench's URLconf: the Django admin, as a project would mount it."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
