"""URLs for the test-suite: the admin, and an async view of the async API's tests."""

from django.contrib import admin
from django.urls import path

from tests.asyncflows import quotation_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("quotation/", quotation_view),
]
