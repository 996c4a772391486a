"""The auth routes take the use cases' command models as bodies and speak the one error
shape, translated by the same function the console and the CLI use.
"""

from __future__ import annotations

from tests.factories import make_org

# The web side of sign-in imports neither SQLAlchemy, the models nor the audit writer:
# tests/test_layers.py checks that for every module of web/ and cli/.


def test_sign_in_refuses_an_unknown_field(client):
    """The body is the command: an unknown field is a 422 naming it (it used to be ignored)."""
    response = client.post(
        "/api/auth/sign-in", json={"email": "a@b.example.com", "password": "x", "remember": True}
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["remember"]


def test_body_errors_use_the_one_translation(client):
    """A too-long e-mail is named with its bound in the house wording, not pydantic's."""
    response = client.post("/api/auth/sign-in", json={"email": "a" * 400, "password": "x"})
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["field"] == "email"
    assert error["message"].startswith("expected at most 320 characters, got 'aaa")


def test_missing_camel_case_field_is_named_as_on_the_wire(client):
    """A missing ``newPassword`` is reported under its wire name."""
    org = make_org(client.app.state.instance.db, "wirenames")
    signed = client.post(
        "/api/auth/sign-in",
        json={"email": org.emails["User"], "password": "correct-horse-battery-staple-42"},
    )
    assert signed.status_code == 200, signed.text
    response = client.post(
        "/api/auth/password",
        json={"currentPassword": "x"},
        headers={"X-CSRF-Token": signed.json()["csrfToken"]},
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["newPassword"]


def test_sign_in_forms_show_the_commands_bounds(client):
    """The sign-in and code forms take their ``maxlength`` from the commands' JSON Schema."""
    from paulyops.services.auth.signin import SecondFactorCommand, SignInCommand
    from paulyops.web.pages import console

    if "/sign-in" not in {getattr(route, "path", None) for route in client.app.routes}:
        client.app.include_router(console.router)
    schema = SignInCommand.model_json_schema(by_alias=True)["properties"]
    page = client.get("/sign-in").text
    assert f'maxlength="{schema["email"]["maxLength"]}"' in page
    assert f'maxlength="{schema["password"]["maxLength"]}"' in page
    code = SecondFactorCommand.model_json_schema(by_alias=True)["properties"]["code"]
    assert code["maxLength"] == 40
