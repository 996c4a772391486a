"""Password hashing (argon2id and FIPS PBKDF2) and the password policy."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paulyops.core.errors import SpecValidationError
from paulyops.core.security.passwords import (
    MAX_PASSWORD_LENGTH,
    PBKDF2_ITERATIONS,
    Argon2Parameters,
    PasswordHashing,
    check_password,
    common_passwords,
    is_common_password,
    validate_password,
)

ARGON2 = PasswordHashing.for_tests()
PBKDF2 = PasswordHashing.for_tests(fips=True)
PBKDF2_FORMAT = re.compile(r"^\$pbkdf2-sha256\$i=\d+\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")
GOOD = "correct horse battery staple"

passwords = st.text(min_size=1, max_size=64)


# --- hashing -------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(password=passwords, other=passwords)
def test_argon2_hash_verifies_only_its_password(password, other):
    """An argon2id hash verifies its password and rejects any other."""
    hashed = ARGON2.hash(password)
    assert hashed.startswith("$argon2id$")
    assert ARGON2.verify(hashed, password)
    assert ARGON2.verify(hashed, other) == (password == other)


@settings(max_examples=25, deadline=None)
@given(password=passwords, other=passwords)
def test_pbkdf2_hash_verifies_only_its_password(password, other):
    """A FIPS-mode hash has the PBKDF2 format, verifies its password and rejects others."""
    hashed = PBKDF2.hash(password)
    assert PBKDF2_FORMAT.match(hashed)
    assert PBKDF2.verify(hashed, password)
    assert PBKDF2.verify(hashed, other) == (password == other)


def test_both_formats_verify_in_either_mode():
    """A hasher in either mode verifies argon2id and PBKDF2 hashes alike."""
    argon2_hash, pbkdf2_hash = ARGON2.hash(GOOD), PBKDF2.hash(GOOD)
    for hasher in (ARGON2, PBKDF2, PasswordHashing(), PasswordHashing(fips=True)):
        assert hasher.verify(argon2_hash, GOOD)
        assert hasher.verify(pbkdf2_hash, GOOD)
        assert not hasher.verify(pbkdf2_hash, GOOD + "!")


def test_hashes_are_salted():
    """Hashing one password twice gives two different hashes."""
    assert ARGON2.hash(GOOD) != ARGON2.hash(GOOD)
    assert PBKDF2.hash(GOOD) != PBKDF2.hash(GOOD)


def test_unicode_forms_of_one_password_match():
    """NFC and NFD spellings of a password verify against each other's hash."""
    composed, decomposed = "caf\u00e9-passphrase", "cafe\u0301-passphrase"
    assert ARGON2.verify(ARGON2.hash(composed), decomposed)
    assert PBKDF2.verify(PBKDF2.hash(decomposed), composed)


@given(hashed=st.text(max_size=120))
def test_malformed_hashes_never_verify_or_raise(hashed):
    """Any string that is not a valid hash returns False instead of raising."""
    assert not ARGON2.verify(hashed, GOOD)


@pytest.mark.parametrize(
    "hashed",
    [
        "$pbkdf2-sha256$i=1000$c2FsdA$AAAA",  # salt too short
        "$pbkdf2-sha256$i=999999999999$" + "A" * 22 + "$" + "A" * 43,  # absurd cost
        "$pbkdf2-sha256$1000$" + "A" * 22 + "$" + "A" * 43,  # no i=
        "$pbkdf2-sha256$i=1000$!!!!$????",
        "$argon2id$v=19$m=8,t=1,p=1$garbage",
        "plaintext-password",
    ],
)
def test_specific_malformed_hashes_are_rejected(hashed):
    """Truncated, oversized-cost or garbled hashes verify as False."""
    assert not PBKDF2.verify(hashed, GOOD)


def test_production_defaults_meet_the_cost_floor():
    """Production PBKDF2 uses >= 600 000 iterations; argon2id uses RFC 9106 low-memory costs."""
    hasher = PasswordHashing()
    assert PBKDF2_ITERATIONS >= 600_000
    assert hasher.pbkdf2_iterations == PBKDF2_ITERATIONS
    assert hasher.argon2_parameters == Argon2Parameters(3, 65_536, 4, 32, 16)
    assert PasswordHashing(fips=True).algorithm == "pbkdf2-sha256"
    with pytest.raises(ValueError, match="pbkdf2_iterations"):
        PasswordHashing(pbkdf2_iterations=10)


def test_needs_rehash_on_algorithm_or_cost_change():
    """A hash needs rehashing when the mode or the costs differ from the configured ones."""
    argon2_hash, pbkdf2_hash = ARGON2.hash(GOOD), PBKDF2.hash(GOOD)
    assert not ARGON2.needs_rehash(argon2_hash)
    assert not PBKDF2.needs_rehash(pbkdf2_hash)
    assert ARGON2.needs_rehash(pbkdf2_hash)
    assert PBKDF2.needs_rehash(argon2_hash)
    assert PasswordHashing(fips=True, pbkdf2_iterations=2_000).needs_rehash(pbkdf2_hash)
    assert PasswordHashing().needs_rehash(argon2_hash)
    assert ARGON2.needs_rehash("garbage")
    assert PBKDF2.needs_rehash("garbage")


@pytest.mark.parametrize("hasher", [ARGON2, PBKDF2], ids=["argon2id", "pbkdf2"])
def test_dummy_verify_does_the_work_and_fails(hasher):
    """dummy_verify runs a real verification with the configured algorithm and returns False."""
    assert hasher.dummy_verify(GOOD) is False
    assert hasher._dummy_hash is not None
    assert hasher._dummy_hash.startswith("$pbkdf2" if hasher.fips else "$argon2id")
    assert hasher.dummy_verify() is False


def test_overlong_passwords_are_refused_by_hash_and_verify():
    """Passwords past the policy maximum are not hashed and never verify."""
    hashed = ARGON2.hash(GOOD)
    with pytest.raises(ValueError, match="at most"):
        ARGON2.hash("x" * (MAX_PASSWORD_LENGTH + 1))
    assert not ARGON2.verify(hashed, "x" * (MAX_PASSWORD_LENGTH + 1))


# --- policy --------------------------------------------------------------------------------


def test_good_password_passes():
    """A long, uncommon passphrase without personal data has no problems."""
    assert check_password(GOOD, email="ada@example.com", name="Ada Lovelace") == []
    validate_password(GOOD, email="ada@example.com", name="Ada Lovelace")


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("short-pw", "at least 12 characters, got 8"),
        ("x" * 257, "at most 256 characters, got 257"),
        ("password1234", "common-password list"),
        ("PassWord2024!!", "common-password list"),
        ("Qwertyuiop123456", "common-password list"),
        ("iloveyou!!!!!!", "common-password list"),
        ("123456789012", "common-password list"),
        ("adalovelace-rocks", "your email address"),
        ("my name is Lovelace", "your name"),
    ],
)
def test_policy_rejections(password, expected):
    """Short, overlong, common and personal passwords are each reported with a reason."""
    problems = check_password(password, email="adalovelace@example.com", name="Ada Lovelace")
    assert any(expected in problem for problem in problems), problems


# A non-ASCII character keeps a generated password from being a piece of the (ASCII) message.
@given(password=st.text(min_size=0, max_size=60).map(lambda s: s + "\u00e9"))
def test_problems_never_repeat_the_password(password):
    """No policy message contains the password itself."""
    for problem in check_password(password, email="x@example.com", name=password):
        assert password not in problem


def test_validate_password_raises_field_errors_on_password():
    """validate_password raises SpecValidationError with one FieldError per problem."""
    with pytest.raises(SpecValidationError) as info:
        validate_password("password", email="a@example.com")
    fields = {error.field for error in info.value.errors}
    assert fields == {"password"}
    assert len(info.value.errors) == 2


def test_common_check_ignores_case_and_trailing_noise():
    """The common list matches case-insensitively and after stripping trailing digits/symbols."""
    assert is_common_password("DRAGON")
    assert is_common_password("Dragon2024!!")
    assert is_common_password("!!monkey99")
    assert not is_common_password("tangerine-kayak-mural")


def test_common_password_list_is_well_formed():
    """The shipped list has >= 1000 unique, lowercase, stripped, non-empty lines."""
    text = files("paulyops").joinpath("data", "common-passwords.txt").read_text("utf-8")
    lines = text.splitlines()
    assert len(lines) >= 1000
    assert len(set(lines)) == len(lines)
    assert all(line and line == line.strip() and line == line.lower() for line in lines)
    assert common_passwords() == frozenset(lines)
    assert {"123456", "password", "qwerty", "iloveyou", "letmein"} <= common_passwords()
