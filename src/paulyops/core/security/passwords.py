"""Password hashing (argon2id, or PBKDF2-HMAC-SHA256 in FIPS mode) and the password policy.

Two stored formats, both self-describing, both accepted by :meth:`PasswordHashing.verify`
whatever the mode::

    $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>     argon2-cffi (PHC string)
    $pbkdf2-sha256$i=600000$<salt>$<hash>            FIPS mode (PHC-style, base64 unpadded)

:meth:`PasswordHashing.needs_rehash` says when a stored hash should be replaced at the next
successful sign-in: other algorithm than the configured one, or weaker parameters.
Passwords are NFKC-normalised before hashing (NIST SP 800-63B, 5.1.1.2), so the same
password typed on another keyboard layout or input method still matches.

The policy (:func:`check_password`) follows SP 800-63B too: length 12 to 256, not a known
common password (``data/common-passwords.txt``, also after stripping trailing digits and
symbols, case-insensitively), and not containing the account's email local part or name.
No composition rules: they push people to ``Password1!``, which the list rejects anyway.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import importlib.resources
import re
import secrets
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from paulyops.core.errors import FieldError, SpecValidationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
# OWASP Password Storage Cheat Sheet (2023) for PBKDF2-HMAC-SHA256.
PBKDF2_ITERATIONS = 600_000
# The floor of OpenSSL's FIPS provider for PBKDF2; only tests go this low.
PBKDF2_MIN_ITERATIONS = 1_000
# A stored hash naming more iterations than this is treated as malformed, so a tampered
# row cannot make one sign-in attempt burn minutes of CPU.
PBKDF2_MAX_ITERATIONS = 100_000_000
PBKDF2_SALT_BYTES = 16
PBKDF2_HASH_BYTES = 32
PBKDF2_PREFIX = "$pbkdf2-sha256$"
ARGON2_PREFIX = "$argon2"
COMMON_PASSWORDS_RESOURCE = "common-passwords.txt"
# Parts of an email local part or name shorter than this are too common to forbid.
MIN_PERSONAL_TOKEN = 3

_TRAILING_NOISE = re.compile(r"[\W\d_]+$")
_LEADING_NOISE = re.compile(r"^[\W\d_]+")
_NAME_SPLIT = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Argon2Parameters:
    """argon2id cost parameters (defaults: RFC 9106's second, low-memory choice).

    Args:
        time_cost: passes over memory.
        memory_cost: memory in KiB.
        parallelism: lanes.
        hash_len: bytes of output.
        salt_len: bytes of random salt.
    """

    time_cost: int = 3
    memory_cost: int = 65_536
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16


# The cheapest parameters argon2-cffi accepts: only for tests.
TEST_ARGON2 = Argon2Parameters(time_cost=1, memory_cost=8, parallelism=1, hash_len=16, salt_len=8)


class PasswordHashing:
    """Hash and verify passwords with the instance's algorithm and costs.

    Args:
        fips: hash with PBKDF2-HMAC-SHA256 (FIPS 140 approved) instead of argon2id.
        argon2: argon2id costs.
        pbkdf2_iterations: PBKDF2 iterations (production default 600 000).

    Raises:
        ValueError: ``pbkdf2_iterations`` is outside the supported range.
    """

    def __init__(
        self,
        *,
        fips: bool = False,
        argon2: Argon2Parameters | None = None,
        pbkdf2_iterations: int = PBKDF2_ITERATIONS,
    ) -> None:
        if not PBKDF2_MIN_ITERATIONS <= pbkdf2_iterations <= PBKDF2_MAX_ITERATIONS:
            raise ValueError(
                f"pbkdf2_iterations: expected {PBKDF2_MIN_ITERATIONS} to "
                f"{PBKDF2_MAX_ITERATIONS}, got {pbkdf2_iterations}"
            )
        self.fips = fips
        self.argon2_parameters = argon2 or Argon2Parameters()
        self.pbkdf2_iterations = pbkdf2_iterations
        p = self.argon2_parameters
        self._argon2 = PasswordHasher(
            time_cost=p.time_cost,
            memory_cost=p.memory_cost,
            parallelism=p.parallelism,
            hash_len=p.hash_len,
            salt_len=p.salt_len,
            type=Type.ID,
        )
        self._dummy_hash: str | None = None

    @classmethod
    def for_tests(cls, *, fips: bool = False) -> PasswordHashing:
        """Return a hasher with the cheapest costs, for tests only."""
        return cls(fips=fips, argon2=TEST_ARGON2, pbkdf2_iterations=PBKDF2_MIN_ITERATIONS)

    @property
    def algorithm(self) -> str:
        """``pbkdf2-sha256`` in FIPS mode, else ``argon2id``."""
        return "pbkdf2-sha256" if self.fips else "argon2id"

    def hash(self, password: str) -> str:
        """Return the stored form of ``password`` with a fresh random salt.

        Raises:
            ValueError: the password is longer than the policy allows.
        """
        if len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"password: expected at most {MAX_PASSWORD_LENGTH} characters")
        normalized = _normalize(password)
        if self.fips:
            return _pbkdf2_hash(normalized, self.pbkdf2_iterations)
        return self._argon2.hash(normalized)

    def verify(self, hashed: str, password: str) -> bool:
        """Return whether ``password`` matches the stored ``hashed`` (either format).

        Never raises for a wrong password or a malformed hash: both return ``False``.
        """
        if len(password) > MAX_PASSWORD_LENGTH:
            return False
        normalized = _normalize(password)
        if hashed.startswith(PBKDF2_PREFIX):
            return _pbkdf2_verify(hashed, normalized)
        if hashed.startswith(ARGON2_PREFIX):
            try:
                return self._argon2.verify(hashed, normalized)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        return False

    def needs_rehash(self, hashed: str) -> bool:
        """Whether ``hashed`` uses another algorithm or weaker costs than configured."""
        if self.fips:
            parsed = _pbkdf2_parse(hashed)
            return parsed is None or parsed[0] < self.pbkdf2_iterations
        if not hashed.startswith(ARGON2_PREFIX):
            return True
        try:
            return self._argon2.check_needs_rehash(hashed)
        except (InvalidHashError, ValueError):
            return True

    def dummy_verify(self, password: str = "") -> bool:
        """Spend the time of one real verification and return ``False``.

        Call it when the account does not exist, so response times do not reveal which
        emails have accounts.
        """
        if self._dummy_hash is None:
            self._dummy_hash = self.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy_hash, password)
        return False


def _normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _pbkdf2_hash(password: str, iterations: int) -> str:
    salt = secrets.token_bytes(PBKDF2_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), salt, iterations, dklen=PBKDF2_HASH_BYTES
    )
    return f"{PBKDF2_PREFIX}i={iterations}${_b64encode(salt)}${_b64encode(digest)}"


def _pbkdf2_parse(hashed: str) -> tuple[int, bytes, bytes] | None:
    """Return (iterations, salt, digest) of a PBKDF2 hash, or ``None`` when malformed."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "pbkdf2-sha256":
        return None
    count = parts[2].removeprefix("i=")
    if parts[2] == count or not count.isdigit():
        return None
    iterations = int(count)
    if not PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS:
        return None
    try:
        salt, digest = _b64decode(parts[3]), _b64decode(parts[4])
    except (binascii.Error, ValueError):
        return None
    if len(salt) < PBKDF2_SALT_BYTES or not digest:
        return None
    return iterations, salt, digest


def _pbkdf2_verify(hashed: str, password: str) -> bool:
    parsed = _pbkdf2_parse(hashed)
    if parsed is None:
        return False
    iterations, salt, expected = parsed
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(actual, expected)


# --- policy ------------------------------------------------------------------------------


@functools.cache
def common_passwords() -> frozenset[str]:
    """Return the shipped list of common passwords (lowercase)."""
    resource = importlib.resources.files("paulyops").joinpath("data", COMMON_PASSWORDS_RESOURCE)
    text = resource.read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def is_common_password(password: str) -> bool:
    """Whether ``password`` is on the common list, also without trailing digits/symbols."""
    folded = _normalize(password).casefold()
    stripped = _TRAILING_NOISE.sub("", folded)
    both = _LEADING_NOISE.sub("", stripped)
    common = common_passwords()
    return any(v in common for v in {folded, stripped, both} if v)


def _personal_tokens(email: str | None, name: str | None) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    if email:
        local = _normalize(email).casefold().partition("@")[0]
        if len(local) >= MIN_PERSONAL_TOKEN:
            tokens.append(("email address", local))
        tokens += [("email address", part) for part in _NAME_SPLIT.split(local)]
    if name:
        folded = _normalize(name).casefold()
        tokens += [("name", part) for part in _NAME_SPLIT.split(folded)]
        tokens.append(("name", re.sub(r"[\W_]+", "", folded)))
    return [(kind, t) for kind, t in tokens if len(t) >= MIN_PERSONAL_TOKEN]


def check_password(
    password: str, *, email: str | None = None, name: str | None = None
) -> list[str]:
    """Return every way ``password`` breaks the policy (empty: acceptable).

    The messages never repeat the password.

    Args:
        password: the candidate password.
        email: the account's email; its local part must not appear in the password.
        name: the account's display name; its parts must not appear in the password.
    """
    problems: list[str] = []
    length = len(password)
    if length < MIN_PASSWORD_LENGTH:
        problems.append(f"expected at least {MIN_PASSWORD_LENGTH} characters, got {length}")
    if length > MAX_PASSWORD_LENGTH:
        problems.append(f"expected at most {MAX_PASSWORD_LENGTH} characters, got {length}")
        return problems  # longer checks on a huge input help nobody
    if is_common_password(password):
        problems.append("expected an uncommon password, got one from the common-password list")
    folded = _normalize(password).casefold()
    seen: set[str] = set()
    for kind, token in _personal_tokens(email, name):
        if token in folded and kind not in seen:
            seen.add(kind)
            problems.append(f"expected a password that does not contain your {kind}")
    return problems


def validate_password(password: str, *, email: str | None = None, name: str | None = None) -> None:
    """Raise when ``password`` breaks the policy; see :func:`check_password`.

    Raises:
        SpecValidationError: one :class:`FieldError` on ``password`` per problem.
    """
    problems = check_password(password, email=email, name=name)
    if problems:
        raise SpecValidationError(
            "password: " + "; ".join(problems),
            [FieldError(field="password", message=problem) for problem in problems],
        )


__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "PBKDF2_ITERATIONS",
    "TEST_ARGON2",
    "Argon2Parameters",
    "PasswordHashing",
    "check_password",
    "common_passwords",
    "is_common_password",
    "validate_password",
]
