from django.urls import path

from . import views

app_name = "xenpools"

urlpatterns = [
    path("", views.PoolListView.as_view(), name="pool_list"),
    path("add/", views.PoolAddView.as_view(), name="pool_add"),
    path("<int:pk>/", views.PoolDetailView.as_view(), name="pool"),
    path("<int:pk>/edit/", views.PoolEditView.as_view(), name="pool_edit"),
    path("<int:pk>/delete/", views.PoolDeleteView.as_view(), name="pool_delete"),
    path("<int:pk>/sync/", views.PoolSyncView.as_view(), name="pool_sync"),
    path("vms/", views.VMListView.as_view(), name="vm_list"),
    path("vms/<int:pk>/", views.VMDetailView.as_view(), name="vm"),
]
