"""Restore requests and wizard links naming things by odd "numbers" ("¹" passes
str.isdigit() but not int(); 30 digits overflow a bigint) are answered 400 / a message, never 500."""
import pytest
from django.urls import reverse

from sesamweb.accounts.roles import Role
from xenpools.models import Pool

ODD_NUMBERS = ["¹", "²³", "9" * 30]


@pytest.fixture
def lab(db):
    return Pool.objects.create(name="lab", address="127.0.0.1", uuid="pool-uuid", product_version="8.2.1")


@pytest.mark.parametrize("value", ODD_NUMBERS)
@pytest.mark.parametrize("url", ["/api/restores/", "/api/restores/validate/"])
def test_a_restore_naming_the_target_pool_by_an_odd_number_is_a_400(api_client, lab, url, value):
    response = api_client(Role.OPERATOR).post(url, {"point": "1", "target_pool": value}, format="json")
    assert response.status_code == 400 and "target_pool" in response.json()


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_a_disk_restore_naming_the_sr_by_an_odd_number_is_a_400(api_client, lab, value):
    response = api_client(Role.OPERATOR).post(
        "/api/restores/disk/", {"point": "1", "disk": "vbd0", "sr": value}, format="json")
    assert response.status_code == 400 and "sr" in response.json()


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_a_disk_restore_naming_the_point_by_an_odd_number_is_a_400(api_client, lab, value):
    from xenpools.models import StorageRepository

    sr = StorageRepository.objects.create(pool=lab, uuid="sr-uuid", ref="OpaqueRef:sr", name="Local storage")
    response = api_client(Role.OPERATOR).post(
        "/api/restores/disk/", {"point": value, "disk": "vbd0", "sr": sr.uuid}, format="json")
    assert response.status_code == 400 and "point" in response.json()


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_a_wizard_link_to_an_odd_point_number_says_the_point_is_gone(operator_client, value):
    response = operator_client.get(reverse("backups:restore"), {"point": value}, follow=True)
    assert response.status_code == 200
    assert "no longer exists" in response.content.decode()
