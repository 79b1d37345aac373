"""schemathesis against the OpenAPI schema the console serves, as an administrator, in-process
(sesamweb.wsgi): every operation gets generated requests (valid and invalid); none may end in a
5xx, and every answer must match the schema (status code declared, body shaped as declared).

Bounded and derandomized so that CI runs the same requests every time, without deadlines so that
a busy machine does not fail it."""
import json
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from sesamweb.accounts.models import ApiToken
from tests.fixtures.summary import report
from tests.fixtures.urlmap import view_model
from tests.fixtures.users import make_user

MAX_EXAMPLES = 10

# Operations that contact the pool at an address in the request: generated addresses would send
# the test to arbitrary hosts, and the world's pool is unreachable on purpose. Their tests run
# against the simulator (tests/xenpools/).
CONTACTS_A_POOL = {("POST", "/api/pools/"), ("POST", "/api/pools/test/"),
                   ("PUT", "/api/pools/{id}/"), ("PATCH", "/api/pools/{id}/"), ("POST", "/api/pools/{id}/sync/")}

REQUESTS = {"count": 0, "operations": set(), "statuses": Counter()}


@pytest.fixture
def admin_token(db, settings):
    settings.ALLOWED_HOSTS = ["*"]
    user = make_user("fuzz-admin", "administrator")
    return ApiToken.issue(user, "fuzz")[1]


@pytest.fixture
def keep_the_test_connection():
    """As django.test.Client does: the WSGI handler must not close the test's database
    connection (and with it the test's transaction) at the end of each request."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def served_schema():
    """The schema /api/schema/ serves (same generator and renderer), built without a request:
    the loader runs at collection time, before there is a database to sign in against."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


def load_schema():
    from sesamweb.wsgi import application

    loaded = schemathesis.openapi.from_dict(served_schema())
    loaded.app = application
    return loaded.exclude(func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in CONTACTS_A_POOL)


schema = load_schema()


def an_existing_row(path_template, parameters):
    """The same path parameters with each integer id replaced by the id of a row the view
    serves (from the world fixture): without it nearly every detail request is a 404."""
    from django.urls import Resolver404, resolve

    mapped = dict(parameters)
    for name, value in parameters.items():
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        try:
            match = resolve(path_template.replace("{" + name + "}", "1").format(**{k: "x" for k in parameters}))
        except (Resolver404, KeyError, IndexError, ValueError):
            continue
        model = view_model(match.func)
        row = model.objects.order_by("pk").first() if model is not None else None
        if row is not None:
            mapped[name] = row.pk
    return mapped


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Half of the generated ids point at existing rows, the other half stay as generated."""
    if not path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, an_existing_row(context.operation.path, path_parameters)])


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_answers_generated_requests_without_server_errors_and_as_its_schema_says(case, admin_token, world,
                                                                                         keep_the_test_connection):
    REQUESTS["count"] += 1
    REQUESTS["operations"].add(case.operation.label)
    response = case.call_and_validate(headers={"Authorization": f"Token {admin_token}"},
                                      checks=[not_a_server_error, response_schema_conformance, status_code_conformance])
    REQUESTS["statuses"][response.status_code] += 1
    exposed = [label for label, secret in world["secrets"].items() if secret.encode() in response.content]
    assert not exposed, f"{case.method} {case.formatted_path} answered with secrets: {exposed}"


def test_zz_report_the_fuzzing_counts():
    """Runs after the generated tests (file order): their totals go to the terminal summary."""
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(REQUESTS["statuses"].items()))
    report(f"API fuzzing: {REQUESTS['count']} generated requests over {len(REQUESTS['operations'])} operations "
           f"(answers {statuses})")
