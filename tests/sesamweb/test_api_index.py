"""/api/ answers with an index of the API and a link to its documentation."""
import pytest
from rest_framework.test import APIClient

from tests.fixtures.users import make_user

pytestmark = pytest.mark.django_db


def test_index_lists_the_collections_and_links_the_docs():
    client = APIClient()
    client.force_authenticate(make_user("alice", "administrator"))

    body = client.get("/api/").json()

    assert body["documentation"] == "http://testserver/api/docs/"
    assert body["schema"] == "http://testserver/api/schema/"
    for collection, url in {"pool": "/api/pools/", "user": "/api/users/", "datastore": "/api/stores/"}.items():
        assert body["collections"][collection] == f"http://testserver{url}"
    # Every link answers.
    for url in body["collections"].values():
        assert client.get(url).status_code == 200, url


def test_index_needs_a_signed_in_user():
    assert APIClient().get("/api/").status_code in (401, 403)
