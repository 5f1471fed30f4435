"""Practices and users: creation rules shared by the CLI and the web, and password checks."""
from __future__ import annotations

import re
import secrets

from peewee import IntegrityError, fn
from werkzeug.security import check_password_hash, generate_password_hash

from pbnsec.core.text import TYPED_WHITESPACE, has_control_characters
from pbnsec.db import change_lock, database
from pbnsec.domain import sessions
from pbnsec.models import Membership, Practice, Role, User

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 256
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Verified against when the email is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A practice or user cannot be created as asked; the message says why."""


def normalise_email(text: str) -> str:
    email = (text or "").strip().lower()
    if has_control_characters(email):
        raise AccountError("The email address contains a control character.")
    if not email:
        raise AccountError("Enter an email address.")
    if len(email) > 254 or not _EMAIL.match(email):
        raise AccountError(f"{email!r} is not an email address.")
    return email


# zxcvbn's estimate (0-4) a password must reach: 3 is "safely unguessable" against an offline attack on a slow hash.
PASSWORD_MIN_SCORE = 3
# zxcvbn refuses longer input (it would only cost time): what the first 72 characters are worth, the rest keeps.
_SCORED_LENGTH = 72
TOO_EASY = "The password is too easy to guess"


def _personal_words(email: str, name: str, practice_names) -> dict[str, str]:
    """What a guesser knows about the account, each word (lower case) with what to call it in a message."""
    words: dict[str, str] = {}

    def add(text: str, what: str, parts: bool = True) -> None:
        text = (text or "").strip().lower()
        if len(text) >= 3:
            words.setdefault(text, what)
            words.setdefault(re.sub(r"[\s._+-]+", "", text), what)
        if parts:
            for part in re.split(r"[\s._+@-]+", text):
                if len(part) >= 3:
                    words.setdefault(part, what)

    local = (email or "").split("@")[0]
    add(local, "your email name")
    add(email, "your email address", parts=False)
    add(name, "your name")
    for practice in practice_names or ():
        add(practice, "your practice's name")
    return words


def _weakness(password: str, words: dict[str, str]) -> str | None:
    """Why zxcvbn finds the password too easy to guess, in words, or None when it is strong enough."""
    from zxcvbn import zxcvbn  # imported on first use: it loads its word lists, which only password changes need

    result = zxcvbn(password[:_SCORED_LENGTH], user_inputs=list(words))
    if result["score"] >= PASSWORD_MIN_SCORE:
        return None
    # The longest weak piece explains the most; zxcvbn's sequence is the split it guessed with.
    for match in sorted(result["sequence"], key=lambda m: -len(m["token"])):
        pattern = match["pattern"]
        if pattern == "dictionary" and match["dictionary_name"] == "user_inputs":
            return f"it contains {words.get(match['matched_word'], 'something about you')}"
        if pattern == "dictionary" and match.get("l33t"):
            return "it is a common word with predictable substitutions like @ for a"
        if pattern == "dictionary" and match["dictionary_name"] == "passwords":
            return "it is a common word pattern, close to passwords many people use"
        if pattern == "dictionary":
            return "it is mostly a common word or name"
        if pattern == "repeat":
            return "it is a repeated pattern like abcabc"
        if pattern == "sequence":
            return "it is a sequence like abcd or 4321"
        if pattern == "spatial":
            return "it is a keyboard pattern like qwerty"
        if pattern in ("date", "regex"):
            return "it is mostly a date or a year"
    return "it has too little variety for its length"


def check_password_strength(password: str, email: str = "", name: str = "", practice_names=()) -> None:
    """Raise AccountError unless the password is long and not guessable, from the account's details among others.

    The message names the reason (zxcvbn's estimate, with the email, its local part, the name and the practice names
    as what a guesser knows).
    """
    if has_control_characters(password):
        raise AccountError("The password contains a control character.")
    if len(password) < PASSWORD_MIN_LENGTH:
        raise AccountError(f"The password must be at least {PASSWORD_MIN_LENGTH} characters long.")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise AccountError(f"The password must be at most {PASSWORD_MAX_LENGTH} characters long.")
    local = email.split("@")[0].lower()
    if len(local) >= 4 and local in password.lower():
        reason = "it contains your email name"  # however strong the rest: it is the first thing tried
    else:
        reason = _weakness(password, _personal_words(email, name, practice_names))
    if reason:
        raise AccountError(f"{TOO_EASY}: {reason}. Use a longer mix of unrelated words.")


def check_password_for(user: User, password: str) -> None:
    """check_password_strength with what is known about this user: their email, name and practices."""
    check_password_strength(password, user.email, user.name, [p.name for p in user.practices()])


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def typed_practice_name(text: str) -> str:
    """A practice name as typed, spaces folded; control characters refused."""
    if has_control_characters(text, allowed=TYPED_WHITESPACE):
        raise AccountError("A practice name cannot contain control characters.")
    return " ".join((text or "").split())


def create_practice(name: str) -> Practice:
    name = typed_practice_name(name)
    if not name:
        raise AccountError("Enter a practice name.")
    if len(name) > 100:
        raise AccountError("A practice name can be at most 100 characters long.")
    try:
        with database.atomic():
            return Practice.create(name=name)
    except IntegrityError:
        raise AccountError(f"A practice named {name!r} already exists.") from None


def find_practice(name: str) -> Practice:
    name = typed_practice_name(name)
    practice = Practice.get_or_none(Practice.name == name)
    if practice is None:  # "riverside dental" still finds "Riverside Dental" when it is the only such name
        matches = list(Practice.select().where(fn.LOWER(Practice.name) == name.lower()).limit(2))
        practice = matches[0] if len(matches) == 1 else None
    if practice is None:
        known = ", ".join(p.name for p in Practice.select().order_by(Practice.name)) or "none yet"
        raise AccountError(f"No practice named {name!r} (known: {known}).")
    return practice


def find_role(name: str) -> Role:
    if has_control_characters(name):
        raise AccountError("A role name cannot contain control characters.")
    wanted = " ".join((name or "").split()).lower()
    role = next((r for r in Role.select() if r.name.lower() == wanted), None)  # "front desk" is Front Desk
    if role is None:
        known = ", ".join(r.name for r in Role.select().order_by(Role.position))
        raise AccountError(f"No role named {name!r} (choose from: {known}).")
    return role


PASSWORD_HASH = "scrypt"  # werkzeug's slow, memory-hard default


def create_user(email, name, role_name, practice_names, password=None, *,
                hash_method: str = PASSWORD_HASH) -> tuple[User, str]:
    """Create an active user in the named practices; returns the user and the password it got.

    `hash_method` is for test fixtures only, which sign in hundreds of times; people always get scrypt.
    """
    email = normalise_email(email)
    if has_control_characters(name, allowed=TYPED_WHITESPACE):
        raise AccountError("A name cannot contain control characters.")
    name = " ".join((name or "").split())
    if not name or len(name) > 100:
        raise AccountError("A name must be 1 to 100 characters long.")
    role = find_role(role_name)
    if not practice_names:
        raise AccountError("A user must belong to at least one practice.")
    practices = [find_practice(p) for p in practice_names]
    generated = password is None
    password = generate_password() if generated else password
    check_password_strength(password, email, name, [p.name for p in practices])
    try:
        with database.atomic():
            user = User.create(
                email=email, name=name, role=role, password_hash=generate_password_hash(password, method=hash_method),
                must_change_password=generated,
            )
            for practice in {p.id: p for p in practices}.values():
                Membership.create(user=user, practice=practice)
    except IntegrityError:
        raise AccountError(f"A user with the email {email!r} already exists.") from None
    return user, password


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, else None; equal work either way."""
    user = User.get_or_none(User.email == (email or "").strip().lower())
    if user is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(user.password_hash, password or "") or not user.active:
        return None
    return user


def bootstrap_owner(owner_email: str, practice_name: str) -> tuple[User, str] | None:
    """On an empty database, create the first practice and its Owner; None when users exist."""
    try:
        with change_lock():
            if User.select().exists():
                return None
            practice = Practice.get_or_none(Practice.name == practice_name) or create_practice(practice_name)
            return create_user(owner_email, "Owner", "Owner", [practice.name])
    except AccountError:
        if User.select().exists():  # another process starting at the same moment created them
            return None
        raise


WRONG_CURRENT_PASSWORD = "That is not your current password."


def change_password(user: User, current: str, new: str, repeat: str) -> dict[str, str]:
    """Set a new password and end the user's other sessions; returns field errors instead when any."""
    errors = {}
    if has_control_characters(current):
        errors["current"] = "The password contains a control character."  # no password has one: not hashed
    elif not check_password_hash(user.password_hash, current or ""):
        errors["current"] = WRONG_CURRENT_PASSWORD
    try:
        check_password_for(user, new or "")
    except AccountError as exc:
        errors["new"] = str(exc)
    if not errors.get("new") and new != repeat:
        errors["repeat"] = "The two new passwords differ."
    if not errors and new == current:
        errors["new"] = "Choose a password you have not been using."
    if not errors:
        password_hash = generate_password_hash(new)
        with database.atomic():
            User.update(password_hash=password_hash, must_change_password=False).where(User.id == user.id).execute()
            sessions.end_others(user, keep=user.sign_in_token, password_hash=password_hash)
    return errors


def change_own_password(visit, from_office: bool, current: str, new: str, repeat: str) -> tuple[dict[str, str], int]:
    """The visit's user changes their password: (field errors, HTTP status), ({}, 303) when it is changed.

    The current password is a password check like a sign-in: the same limits, counted the same way, audited.
    """
    from pbnsec.domain import audit, signin_limits
    from pbnsec.logs import security_event

    user = visit.user
    where = visit.practice.id if visit.practice is not None else None
    attempt = signin_limits.begin(user.email, visit.ip, from_office)
    if attempt.wait:
        audit.record_by(visit, "password_change_failed", target=user.email, practice=where,
                        detail="too many attempts")
        return {"current": f"Too many password attempts. {attempt.wait_text}"}, 429
    errors = change_password(user, current[:1024], new[:1024], repeat[:1024])
    if errors.get("current") == WRONG_CURRENT_PASSWORD:
        audit.record_by(visit, "password_change_failed", target=user.email, practice=where,
                        detail="wrong current password")
        security_event("password_change_failed", email=user.email, ip=visit.ip)
    elif "current" in errors:
        attempt.not_checked()  # refused before any check (a control character): counts nothing, resets nothing
    else:
        attempt.succeeded()
    if errors:
        return errors, 422
    audit.record_by(visit, "password_changed", target=user.email, practice=where)
    return {}, 303
