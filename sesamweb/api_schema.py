"""OpenAPI schema defaults, declared once instead of on every view: the error answers every
endpoint can give (a drf-spectacular postprocessing hook, SPECTACULAR_SETTINGS)."""

ERROR_COMPONENTS = {
    "ErrorDetail": {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    "ValidationErrors": {
        "type": "object",
        "description": 'Messages by field name ("detail" or "non_field_errors" when they concern no one field).',
        "additionalProperties": {},
    },
}


def _error(description, component):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}}


def _takes_input(method, operation):
    return method in ("post", "put", "patch") or any(p.get("in") == "query" for p in operation.get("parameters", []))


def declare_error_responses(result, generator, request, public):
    """Every operation may answer 401 (not signed in) and 403 (role); those with input 400;
    those naming an object in the path 404. Answers a view declares itself are kept."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(ERROR_COMPONENTS)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            defaults = {"401": _error("Not signed in, or the token is unknown or revoked.", "ErrorDetail"),
                        "403": _error("Your role does not allow this.", "ErrorDetail")}
            if "{" in path:
                defaults["404"] = _error("No such object.", "ErrorDetail")
            if _takes_input(method, operation):
                defaults["400"] = _error("The request is invalid; the messages say why.", "ValidationErrors")
            for code, answer in defaults.items():
                responses.setdefault(code, answer)
    return result
