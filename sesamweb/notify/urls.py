from django.urls import path

from . import views

app_name = "notify"

urlpatterns = [
    path("", views.NotificationsView.as_view(), name="overview"),
    path("channels/new/", views.ChannelCreateView.as_view(), name="channel_create"),
    path("channels/<int:pk>/", views.ChannelUpdateView.as_view(), name="channel_update"),
    path("channels/<int:pk>/test/", views.ChannelTestView.as_view(), name="channel_test"),
    path("channels/<int:pk>/delete/", views.ChannelDeleteView.as_view(), name="channel_delete"),
    path("rules/new/", views.RuleCreateView.as_view(), name="rule_create"),
    path("rules/<int:pk>/", views.RuleUpdateView.as_view(), name="rule_update"),
    path("rules/<int:pk>/delete/", views.RuleDeleteView.as_view(), name="rule_delete"),
    path("deliveries/", views.DeliveryListView.as_view(), name="delivery_list"),
]
