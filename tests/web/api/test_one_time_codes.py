"""TOTP and recovery codes on every route that takes one: normalized or a 422, never a 500.

The routes: ``POST /api/auth/totp/confirm``, ``POST /api/auth/second-factor`` (JSON API),
``POST /console/security/totp/confirm`` and ``POST /sign-in/code`` (console pages). No CLI
command takes a code. Digits of any script count as the digits they are (a phone keyboard
in an Arabic locale types Arabic-Indic digits); anything that is not a code is refused
naming the field ``code``.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paulyops.core.errors import SpecValidationError
from paulyops.services.auth.accounts import normalize_code
from paulyops.web.pages import console
from tests.factories import make_org

ARABIC_INDIC = str.maketrans(
    "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
)
FULL_WIDTH = str.maketrans(
    "0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"
)
MALFORMED = [
    "\u0661\u0662\u0663\u0664\u0665\U0001f600",
    "12345",
    "abcdef",
    "123\x00456",
    "1234567",
    "\u202e123456",
]
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@given(st.text(max_size=40))
def test_normalize_code_gives_an_ascii_code_or_a_field_error(text):
    """Any text is either a canonical ASCII code or refused with the field ``code``."""
    try:
        clean, fields = normalize_code(text), ["code"]
    except SpecValidationError as err:
        clean, fields = None, [item.field for item in err.errors]
    assert fields == ["code"]
    if clean is not None:
        assert clean.isascii()
        assert re.fullmatch(r"[0-9]{6}|[0-9a-f]{12}", clean)


def test_normalize_code_maps_every_script_of_digits_and_separators():
    """Arabic-Indic, Persian and full-width digits, spaces and dashes normalize to ASCII."""
    assert normalize_code("\u0661\u0662\u0663\u0664\u0665\u0666") == "123456"
    assert normalize_code("\u06f1\u06f2\u06f3 \u06f4\u06f5\u06f6") == "123456"
    assert normalize_code("\uff11\uff12\uff13\uff14\uff15\uff16") == "123456"
    assert normalize_code(" 1A2B3C\u20134D5E6F ") == "1a2b3c4d5e6f"


def _enroll_api(client, email):
    from tests.factories import PASSWORD

    csrf = client.post("/api/auth/sign-in", json={"email": email, "password": PASSWORD}).json()[
        "csrfToken"
    ]
    secret = client.post("/api/auth/totp/start", headers={"X-CSRF-Token": csrf}).json()["secret"]
    return csrf, secret


@pytest.mark.parametrize("code", MALFORMED)
def test_api_routes_refuse_malformed_codes_with_422_naming_the_field(client, code):
    """Both API routes that take a code answer 422 with the one error shape on ``code``."""
    from tests.factories import PASSWORD

    org = make_org(client.app.state.instance.db, "acme")
    csrf, _secret = _enroll_api(client, org.emails["User"])
    confirm = client.post(
        "/api/auth/totp/confirm", json={"code": code}, headers={"X-CSRF-Token": csrf}
    )
    assert confirm.status_code == 422, confirm.text
    body = confirm.json()
    assert body["success"] is False
    assert [item["field"] for item in body["errors"]] == ["code"]
    assert "6 digits" in body["errors"][0]["message"]
    client.post("/api/auth/sign-in", json={"email": org.emails["User"], "password": PASSWORD})
    second = client.post("/api/auth/second-factor", json={"code": code})
    assert second.status_code == 422, second.text
    assert [item["field"] for item in second.json()["errors"]] == ["code"]


def test_api_codes_in_other_scripts_work_and_wrong_ones_are_401(client):
    """The right code typed in Arabic-Indic digits enrols and signs in; a wrong one is 401."""
    from tests.factories import PASSWORD

    org = make_org(client.app.state.instance.db, "acme")
    csrf, secret = _enroll_api(client, org.emails["User"])
    totp = pyotp.TOTP(secret)
    confirmed = client.post(
        "/api/auth/totp/confirm",
        json={"code": totp.now().translate(ARABIC_INDIC)},
        headers={"X-CSRF-Token": csrf},
    )
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recoveryCodes"]
    step = client.post(
        "/api/auth/sign-in", json={"email": org.emails["User"], "password": PASSWORD}
    )
    assert step.json()["needsSecondFactor"] is True
    wrong = "000000" if totp.now() != "000000" else "111111"
    assert (
        client.post(
            "/api/auth/second-factor", json={"code": wrong.translate(ARABIC_INDIC)}
        ).status_code
        == 401
    )
    next_code = totp.at(time.time() + 30).translate(FULL_WIDTH)
    ok = client.post("/api/auth/second-factor", json={"code": next_code})
    assert ok.status_code == 200, ok.text
    # A recovery code pasted in capitals with an en dash still counts.
    client.post("/api/auth/sign-in", json={"email": org.emails["User"], "password": PASSWORD})
    pasted = recovery[0].upper().replace("-", "\u2013")
    assert client.post("/api/auth/second-factor", json={"code": pasted}).status_code == 200


@pytest.fixture
def web(client):
    """The app's client, with the console router included if the app does not yet."""
    paths = {getattr(route, "path", None) for route in client.app.routes}
    if "/console" not in paths:
        client.app.include_router(console.router)
    return client


def _token(page) -> str:
    match = TOKEN.search(page.text)
    assert match, page.text[:300]
    return match.group(1)


def _console_sign_in(web, email):
    from tests.factories import PASSWORD

    web.cookies.clear()
    token = _token(web.get("/sign-in"))
    return web.post(
        "/sign-in",
        data={"email": email, "password": PASSWORD, "csrf_token": token, "next": ""},
        follow_redirects=False,
    )


def test_console_pages_take_codes_in_any_script_and_refuse_malformed_ones(web):
    """The console's confirm and sign-in code forms: 422 for a malformed code, 401 for a
    wrong one in another script, success for the right one in another script."""
    org = make_org(web.app.state.instance.db, "acme")
    assert _console_sign_in(web, org.emails["Admin"]).status_code == 303
    token = _token(web.get("/console/security"))
    started = web.post("/console/security/totp/start", data={"csrf_token": token})
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', started.text).group(1)
    totp = pyotp.TOTP(secret)
    for code in MALFORMED:
        refused = web.post(
            "/console/security/totp/confirm", data={"csrf_token": token, "code": code}
        )
        assert refused.status_code == 422, (code, refused.status_code)
        assert "6 digits" in refused.text
    confirmed = web.post(
        "/console/security/totp/confirm",
        data={"csrf_token": token, "code": totp.now().translate(ARABIC_INDIC)},
    )
    assert "recovery codes are shown" in confirmed.text
    first = _console_sign_in(web, org.emails["Admin"])
    assert first.headers["location"].startswith("/sign-in/code")
    code_token = _token(web.get(first.headers["location"]))
    for code in MALFORMED:
        refused = web.post(
            "/sign-in/code", data={"csrf_token": code_token, "code": code, "next": ""}
        )
        assert refused.status_code == 422, (code, refused.status_code)
        assert "6 digits" in refused.text
    wrong = "000000" if totp.now() != "000000" else "111111"
    denied = web.post(
        "/sign-in/code",
        data={"csrf_token": code_token, "code": wrong.translate(ARABIC_INDIC), "next": ""},
    )
    assert denied.status_code == 401
    done = web.post(
        "/sign-in/code",
        data={
            "csrf_token": code_token,
            "code": totp.at(time.time() + 30).translate(ARABIC_INDIC),
            "next": "",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:500]
