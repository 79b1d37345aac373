from django.contrib.auth import get_user_model, password_validation
from rest_framework import serializers

from ..models import ApiToken
from ..roles import Role
from ..services import user_role_uncached


class UserSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=Role.choices)
    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"},
                                     help_text="Initial password (create only); never returned.")
    must_change_password = serializers.BooleanField(write_only=True, required=False, default=True)

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "first_name", "last_name", "email", "is_active", "role", "last_login",
                  "date_joined", "password", "must_change_password"]
        read_only_fields = ["id", "last_login", "date_joined"]

    def to_representation(self, user):
        data = super().to_representation(user)
        role = user_role_uncached(user)
        data["role"] = role.value if role else None
        return data

    def validate(self, attrs):
        if self.instance is None:
            if not attrs.get("password"):
                raise serializers.ValidationError({"password": "An initial password is required."})
            probe = get_user_model()(username=attrs.get("username", ""), email=attrs.get("email", ""))
            try:
                password_validation.validate_password(attrs["password"], probe)
            except Exception as error:  # django ValidationError -> field error
                raise serializers.ValidationError({"password": list(getattr(error, "messages", [str(error)]))})
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
