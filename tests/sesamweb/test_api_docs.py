import re

import pytest

pytestmark = pytest.mark.django_db


def test_the_api_docs_load_their_assets_from_this_server(admin_client):
    response = admin_client.get("/api/docs/")
    assert response.status_code == 200
    sources = re.findall(rb'(?:src|href)="([^"]+)"', response.content)
    assert sources and all(source.startswith(b"/") for source in sources), sources


def test_the_schema_documents_the_foundation_endpoints(admin_client):
    response = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/users/", "/api/tokens/", "/api/audit-events/", "/api/audit-events/{id}/"):
        assert path in paths
    assert response.json()["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"


def test_the_schema_generates_without_warnings(tmp_path):
    """A warning means an endpoint documented wrongly (an untyped parameter, a guessed type,
    two names for one choice set); --fail-on-warn turns each into a failure here."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi:")


def test_the_schema_and_docs_need_a_signed_in_user(client, api_client):
    assert client.get("/api/schema/").status_code == 401
    response = client.get("/api/docs/")
    assert response.status_code == 302 and response["Location"].startswith("/sign-in/")
    assert api_client("auditor").get("/api/schema/", {"format": "json"}).status_code == 200


def test_a_user_without_a_role_gets_no_schema(client, norole_user):
    client.force_login(norole_user)
    assert client.get("/api/schema/").status_code == 403
