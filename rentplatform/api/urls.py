from __future__ import annotations

from django.urls import path, re_path

from . import views

app_name = "api"
urlpatterns = [
    path("", views.ApiRoot.as_view(), name="root"),
    path("leases/", views.LeaseList.as_view(), name="lease-list"),
    path("leases/<int:pk>/", views.LeaseDetail.as_view(), name="lease-detail"),
    path("leases/<int:pk>/payments/", views.LeasePayments.as_view(), name="lease-payments"),
    path("payments/", views.PaymentList.as_view(), name="payment-list"),
    path("payments/<str:public_id>/", views.PaymentDetail.as_view(), name="payment-detail"),
    path("payments/<str:public_id>/void/", views.PaymentVoid.as_view(), name="payment-void"),
    # Last: every other /api/ address (the project mounts this module last under api/).
    re_path(r"^", views.not_found),
]
