from .roles import MANAGE, OPERATE, user_role, user_can


def roles(request):
    user = getattr(request, "user", None)
    return {
        "user_role": user_role(user),
        "can_operate": user_can(user, OPERATE),
        "can_manage": user_can(user, MANAGE),
    }
