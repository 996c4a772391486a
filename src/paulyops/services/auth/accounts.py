"""User accounts: creation, passwords, sign-in checks and the TOTP second factor.

Sign-in failures are deliberately uninformative: a wrong password, an unknown e-mail and a
disabled account give the same message and take the same time (a dummy hash verification
runs when there is no account), so nobody can probe which addresses have accounts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

import pyotp
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paulyops.core.db.models import User, utcnow
from paulyops.core.errors import (
    AuthenticationError,
    ConflictError,
    FieldError,
    NotFoundError,
    SpecValidationError,
)
from paulyops.core.security.crypto import Aad, KeyRing
from paulyops.core.security.passwords import PasswordHashing, validate_password

SIGN_IN_FAILED = "the e-mail address or password is not correct"
RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "PaulyOps"
CODE_FORMAT = (
    "expected the 6 digits from your authenticator app or a recovery code like 1a2b3c-4d5e6f"
)
# After normalizing: a TOTP code, or a recovery code (two groups of 3 random bytes in hex).
_CODE_SHAPE = re.compile(r"[0-9]{6}|[0-9a-f]{12}")
# Separators people type or paste between groups: spaces, hyphens and Unicode dashes.
_CODE_SEPARATORS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")
# Bidirectional embeddings, overrides and isolates: they reorder how the text around them
# is shown, so "evil\u202emoc.elpmaxe" reads as someone else's address or name.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _hidden_characters(text: str, *, strict: bool) -> list[str]:
    """Return the characters of ``text`` a reader cannot see or that reorder it.

    Always control characters (NUL, BEL, ...) and bidi controls; with ``strict`` (e-mail
    addresses) also every other format character (zero-width space, joiners, marks) and
    every space or separator.
    """
    return [char for char in text if _hidden(char, strict=strict)]


def _hidden(char: str, *, strict: bool) -> bool:
    category = unicodedata.category(char)
    if category == "Cc" or char in _BIDI_CONTROLS:
        return True
    return strict and (category == "Cf" or category.startswith("Z"))


def _describe(chars: list[str]) -> str:
    return ", ".join(sorted({f"U+{ord(char):04X}" for char in chars}))


def normalize_email(email: str) -> str:
    """Return the canonical form of an e-mail address (trimmed, lower-case)."""
    return email.strip().lower()


def _check_email(email: str) -> str:
    clean = normalize_email(email)
    local, _, domain = clean.partition("@")
    hidden = _hidden_characters(clean, strict=True)
    if hidden:
        raise SpecValidationError(
            "bad e-mail address",
            [
                FieldError(
                    "email", f"expected no spaces or invisible characters ({_describe(hidden)})"
                )
            ],
        )
    if not local or "." not in domain or "@" in domain or len(clean) > 320:
        raise SpecValidationError(
            "bad e-mail address",
            [
                FieldError(
                    "email", f"expected an e-mail address like name@example.com, got {email!r}"
                )
            ],
        )
    return clean


def check_email(email: str) -> str:
    """Return the normalized address, or refuse a malformed one.

    Raises:
        SpecValidationError: not an address like name@example.com (field ``email``).
    """
    return _check_email(email)


def find_user(session: Session, email: str) -> User | None:
    """Return the user with this e-mail address (case-insensitive), if any."""
    return session.scalars(select(User).where(User.email == normalize_email(email))).first()


def clean_name(name: str) -> str:
    """Return a person's name with its whitespace collapsed, or refuse it.

    Raises:
        SpecValidationError: empty, over 200 characters, or holding control characters
            (field ``name``).
    """
    clean = " ".join(name.split())
    if not 1 <= len(clean) <= 200:
        raise SpecValidationError("bad name", [FieldError("name", "expected 1 to 200 characters")])
    hidden = _hidden_characters(clean, strict=False)
    if hidden:
        raise SpecValidationError(
            "bad name",
            [FieldError("name", f"expected no control characters ({_describe(hidden)})")],
        )
    return clean


def check_new_password(password: str, *, email: str, name: str) -> None:
    """Check a new account's address, name and password as :func:`create_user` will.

    Writes nothing, so a caller can check before it claims anything (an invitation).

    Raises:
        SpecValidationError: a bad address or name, or a password that breaks the policy.
    """
    validate_password(password, email=_check_email(email), name=clean_name(name))


def create_user(
    session: Session,
    hashing: PasswordHashing,
    *,
    email: str,
    name: str,
    password: str | None = None,
    is_platform_admin: bool = False,
) -> User:
    """Create a user; without a password they must set one through a one-time link.

    Raises:
        SpecValidationError: a bad e-mail, name or password (naming the field).
        ConflictError: the e-mail address is taken.
    """
    clean_email = _check_email(email)
    display_name = clean_name(name)
    if find_user(session, clean_email) is not None:
        raise ConflictError(f"an account for {clean_email} already exists")
    password_hash = None
    if password is not None:
        validate_password(password, email=clean_email, name=display_name)
        password_hash = hashing.hash(password)
    user = User(
        email=clean_email,
        name=display_name,
        password_hash=password_hash,
        password_changed_at=utcnow() if password_hash else None,
        is_platform_admin=is_platform_admin,
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, hashing: PasswordHashing, user: User, password: str) -> None:
    """Set a new password (policy-checked); callers revoke the user's sessions after."""
    validate_password(password, email=user.email, name=user.name)
    user.password_hash = hashing.hash(password)
    user.password_changed_at = utcnow()


@dataclass(frozen=True, slots=True)
class CheckedCredentials:
    """A user whose password matched, and whether a second factor is still needed."""

    user: User
    needs_second_factor: bool


def check_credentials(
    session: Session, hashing: PasswordHashing, *, email: str, password: str
) -> CheckedCredentials:
    """Check an e-mail and password.

    Raises:
        AuthenticationError: with one generic message for every kind of failure.
    """
    user = find_user(session, email) if len(email) <= 320 else None
    if user is None or user.password_hash is None or not user.is_active:
        hashing.dummy_verify(password)
        raise AuthenticationError(SIGN_IN_FAILED)
    if not hashing.verify(user.password_hash, password):
        raise AuthenticationError(SIGN_IN_FAILED)
    if hashing.needs_rehash(user.password_hash):
        user.password_hash = hashing.hash(password)
    return CheckedCredentials(user, needs_second_factor=user.totp_enabled)


def record_sign_in(user: User) -> None:
    """Remember when the user last signed in."""
    user.last_sign_in_at = utcnow()


def list_users(session: Session) -> list[User]:
    """Return every user of the instance, by e-mail."""
    return list(session.scalars(select(User).order_by(User.email)).all())


def count_users(session: Session) -> int:
    """Return how many users the instance has."""
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def get_user(session: Session, user_id: str) -> User:
    """Return a user by id.

    Raises:
        NotFoundError: no such user.
    """
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user {user_id!r} not found")
    return user


# --- second factor ----------------------------------------------------------------------


def _totp_aad(user: User) -> Aad:
    return Aad("users", user.id, "totp_secret")


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").strip().lower().encode()).hexdigest()


def normalize_code(code: str) -> str:
    r"""Return a TOTP or recovery code in its canonical ASCII form, or refuse it.

    Phone keyboards and authenticator apps in other locales type digits of other scripts
    (Arabic-Indic ``\u0661\u0662\u0663...``, full-width ``\uff11\uff12...``): every
    Unicode decimal digit becomes its ASCII digit, so the right code works whatever
    keyboard typed it. Spaces and dashes between groups are dropped and letters
    lower-cased. Anything else is not a code, and comparing it would be meaningless
    (``hmac.compare_digest`` even raises on non-ASCII text).

    Raises:
        SpecValidationError: not a 6-digit code nor a recovery code (field ``code``).
    """
    chars: list[str] = []
    for char in unicodedata.normalize("NFKC", code):
        if char.isspace() or char in _CODE_SEPARATORS:
            continue
        chars.append(str(unicodedata.decimal(char)) if char.isdecimal() else char.lower())
    clean = "".join(chars)
    if not (clean.isascii() and _CODE_SHAPE.fullmatch(clean)):
        raise SpecValidationError("that is not a code", [FieldError("code", CODE_FORMAT)])
    return clean


def _one_time_code(value: str) -> str:
    try:
        return normalize_code(value)
    except SpecValidationError as err:
        raise PydanticCustomError("code_format", err.errors[0].message) from None


# A command field holding a TOTP or recovery code: normalized (any script's digits,
# spaces, dashes) or refused with an error naming the field.
OneTimeCode = Annotated[str, AfterValidator(_one_time_code)]


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    """A TOTP secret waiting for its first code, and its provisioning URI for an app."""

    secret: str = field(repr=False)
    uri: str = field(repr=False)  # carries the secret


def start_totp(user: User, keyring: KeyRing) -> TotpEnrollment:
    """Create a TOTP secret for the user (stored encrypted; enabled after a valid code)."""
    secret = pyotp.random_base32()
    user.totp_secret = keyring.encrypt(secret.encode(), aad=_totp_aad(user))
    user.totp_enabled = False
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)
    return TotpEnrollment(secret, uri)


def confirm_totp(user: User, keyring: KeyRing, code: str) -> list[str]:
    """Enable TOTP after a valid code; return the 10 one-time recovery codes (shown once).

    Raises:
        SpecValidationError: the code is wrong or malformed (field ``code``).
    """
    if not verify_totp(user, keyring, code, require_enabled=False):
        raise SpecValidationError(
            "wrong code", [FieldError("code", "that code is not correct; check the app's clock")]
        )
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODE_COUNT)]
    user.recovery_codes = [_hash_code(code) for code in codes]
    user.totp_enabled = True
    return codes


def verify_totp(user: User, keyring: KeyRing, code: str, *, require_enabled: bool = True) -> bool:
    """Check a TOTP code (one step of clock drift allowed) or an unused recovery code.

    Raises:
        SpecValidationError: ``code`` is neither shape of code (see :func:`normalize_code`).
    """
    clean = normalize_code(code)
    if user.totp_secret is None or (require_enabled and not user.totp_enabled):
        return False
    secret = keyring.decrypt(user.totp_secret, aad=_totp_aad(user)).decode()
    if len(clean) == 6:
        totp = pyotp.TOTP(secret)
        now = utcnow()
        for drift in (-1, 0, 1):
            when = now + timedelta(seconds=drift * totp.interval)
            step = totp.timecode(when)
            if hmac.compare_digest(totp.at(when), clean):
                # Each code works once: a code seen over a shoulder cannot be replayed.
                if user.totp_last_step is not None and step <= user.totp_last_step:
                    return False
                user.totp_last_step = step
                return True
        return False
    if not require_enabled:
        return False
    digest = _hash_code(clean)
    for stored in list(user.recovery_codes):
        if hmac.compare_digest(stored, digest):
            user.recovery_codes = [c for c in user.recovery_codes if c != stored]
            return True
    return False


def disable_totp(user: User) -> None:
    """Turn the second factor off and forget its secret and recovery codes."""
    user.totp_secret = None
    user.totp_enabled = False
    user.recovery_codes = []


__all__ = [
    "SIGN_IN_FAILED",
    "CheckedCredentials",
    "OneTimeCode",
    "TotpEnrollment",
    "check_credentials",
    "check_email",
    "check_new_password",
    "clean_name",
    "confirm_totp",
    "count_users",
    "create_user",
    "disable_totp",
    "find_user",
    "get_user",
    "list_users",
    "normalize_code",
    "normalize_email",
    "record_sign_in",
    "set_password",
    "start_totp",
    "verify_totp",
]
