from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from ..models import ApiToken
from ..roles import Role, role_from_groups


class RoleField(serializers.ChoiceField):
    """The user's role, read from their groups (null: a user without a role); written through
    accounts.services, which needs a role."""

    def __init__(self, **kwargs):
        super().__init__(choices=Role.choices, allow_null=True, **kwargs)

    def validate_empty_values(self, data):
        if data is None:
            self.fail("null")
        return super().validate_empty_values(data)

    def get_attribute(self, user):
        role = role_from_groups(user)
        return role.value if role else None


class UserSerializer(serializers.ModelSerializer):
    role = RoleField()
    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"},
                                     help_text="Initial password (create only); never returned.")
    must_change_password = serializers.BooleanField(write_only=True, required=False, default=True)

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "first_name", "last_name", "email", "is_active", "role", "last_login",
                  "date_joined", "password", "must_change_password"]
        read_only_fields = ["id", "last_login", "date_joined"]

    def validate_password(self, password):
        if self.instance is None:
            data = self.initial_data
            probe = get_user_model()(username=data.get("username", ""), email=data.get("email", ""))
            try:
                password_validation.validate_password(password, probe)
            except DjangoValidationError as error:
                raise serializers.ValidationError(list(error.messages))
        return password

    def validate(self, attrs):
        if self.instance is None:
            if not attrs.get("password"):
                raise serializers.ValidationError({"password": "An initial password is required."})
        else:
            if "password" in attrs:
                raise serializers.ValidationError({"password": "Passwords cannot be changed here."})
            if "username" in attrs and attrs["username"] != self.instance.username:
                raise serializers.ValidationError({"username": "Usernames cannot be changed."})
            request = self.context.get("request")
            if request and self.instance == request.user:
                if attrs.get("is_active") is False:
                    raise serializers.ValidationError({"is_active": "You cannot deactivate your own account."})
                if attrs.get("role", Role.ADMINISTRATOR) != Role.ADMINISTRATOR:
                    raise serializers.ValidationError({"role": "You cannot remove your own administrator role."})
        return attrs


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "hint", "created", "last_used"]
        read_only_fields = ["id", "hint", "created", "last_used"]

    def validate_name(self, name):
        user = self.context["request"].user
        if ApiToken.objects.filter(user=user, name=name).exists():
            raise serializers.ValidationError("You already have a token with this name.")
        return name
