from django.contrib.auth import get_user_model
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from ..models import ApiToken
from ..roles import MANAGE, VIEW, Role
from ..services import create_user, issue_token, revoke_token, update_user
from .serializers import ApiTokenSerializer, UserSerializer


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Users and their roles (administrators only). Deactivate with `is_active: false`;
    users are never deleted, so the audit log keeps pointing at them."""

    queryset = get_user_model().objects.order_by("username").prefetch_related("groups")
    serializer_class = UserSerializer
    read_capability = MANAGE
    write_capability = MANAGE
    filterset_fields = ["is_active"]
    search_fields = ["username", "first_name", "last_name", "email"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = create_user(
            data["username"], role=Role(data["role"]), password=data["password"], email=data.get("email", ""),
            first_name=data.get("first_name", ""), last_name=data.get("last_name", ""),
            must_change_password=data.get("must_change_password", True),
        )

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = update_user(
            serializer.instance, role=Role(data["role"]) if "role" in data else None,
            is_active=data.get("is_active"), email=data.get("email"),
            first_name=data.get("first_name"), last_name=data.get("last_name"),
        )


class ApiTokenViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
                      viewsets.GenericViewSet):
    """Your own API tokens. The key is returned once, in the response to the creation."""

    serializer_class = ApiTokenSerializer
    read_capability = VIEW
    write_capability = VIEW  # every user manages their own tokens

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):     # the schema generator has no user
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = issue_token(request.user, serializer.validated_data["name"])
        return Response({**ApiTokenSerializer(token).data, "key": key}, status=status.HTTP_201_CREATED)

    def perform_destroy(self, token):
        revoke_token(token)
