"""API list pagination: a huge, negative or non-ASCII ?limit= / ?offset= never gives a 500,
and a page never holds more than the configured maximum."""
import pytest
from django.conf import settings

from sesamweb.accounts.roles import Role


def paginated_list_paths(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    return sorted(path for path, operations in schema["paths"].items()
                  if "{" not in path and any(p["name"] == "limit" for p in operations.get("get", {}).get("parameters", [])))


@pytest.fixture
def admin_api(api_client):
    return api_client(Role.ADMINISTRATOR)


def test_every_list_endpoint_answers_a_huge_limit_or_offset_with_a_page(admin_api):
    paths = paginated_list_paths(admin_api)
    assert "/api/vms/" in paths and "/api/audit-events/" in paths and len(paths) >= 10
    for path in paths:
        for query in ({"limit": "9" * 30}, {"limit": str(2**63)}, {"offset": "9" * 30}, {"limit": "¹"},
                      {"offset": "²"}, {"limit": "-5"}, {"limit": "9" * 30, "offset": "9" * 30}):
            response = admin_api.get(path, query)
            assert response.status_code == 200, (path, query, response.status_code)
            assert "results" in response.json()


def test_a_page_holds_at_most_the_maximum_page_size(admin_api, settings):
    for number in range(3):
        assert admin_api.post("/api/tokens/", {"name": f"extra-{number}"}, format="json").status_code == 201
    settings.SESAM_API_MAX_PAGE_SIZE = 2
    body = admin_api.get("/api/tokens/", {"limit": "9" * 30}).json()
    assert body["count"] == 4 and len(body["results"]) == 2 and "limit=2" in body["next"]


def test_the_default_pagination_is_the_capped_one():
    assert settings.REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] == "sesamweb.pagination.ApiPagination"
