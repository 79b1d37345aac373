from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("me/", views.MyAccountView.as_view(), name="my_account"),
    path("me/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("me/tokens/<int:pk>/revoke/", views.TokenRevokeView.as_view(), name="token_revoke"),
    path("users/", views.UserListView.as_view(), name="user_list"),
    path("users/new/", views.UserCreateView.as_view(), name="user_create"),
    path("users/<int:pk>/", views.UserUpdateView.as_view(), name="user_update"),
    path("users/<int:pk>/password/", views.UserPasswordResetView.as_view(), name="user_password"),
]
