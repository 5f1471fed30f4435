"""Password checks tell the truth: zxcvbn's estimate, with what a guesser knows about the account."""
import pytest
from conftest import PASSWORD, PEOPLE

from pbnsec.domain.users import AccountError, check_password_strength

ANN = dict(email="ann.lee@example.com", name="Ann Lee", practice_names=["Riverside Dental"])


@pytest.mark.parametrize("password,reason", [
    ("abcdabcdabcd", "a repeated pattern like abcabc"),
    ("password12345", "a common word pattern"),
    ("P@ssw0rd12345", "predictable substitutions"),
    ("asdfghjkl;lkj", "a keyboard pattern"),
    ("annlee123456", "contains your email name"),
    ("ann.lee.loves.you", "contains your email name"),
    ("riversidedental2024", "contains your practice's name"),
    ("abcdefghijklmnop", "a sequence like abcd"),
])
def test_a_guessable_password_is_refused_with_its_real_reason(password, reason):
    with pytest.raises(AccountError) as refused:
        check_password_strength(password, **ANN)
    assert "too easy to guess" in str(refused.value) and reason in str(refused.value)


def test_the_name_counts_as_something_a_guesser_knows():
    check_password_strength("Zebedee Quinton 77", "x@example.com", "Pat Kim")  # strong for anyone else
    with pytest.raises(AccountError, match="contains your name"):
        check_password_strength("Zebedee Quinton 77", "x@example.com", "Zebedee Quinton")


@pytest.mark.parametrize("who", PEOPLE)
def test_the_seeded_password_still_passes_for_every_seeded_person(who):
    email, name, _, practices = PEOPLE[who]
    check_password_strength(PASSWORD, email, name, practices)


@pytest.mark.parametrize("password,message", [
    ("short one", "at least 12 characters"),
    ("x" * 257, "at most 256 characters"),
    ("a long enough\x00 passphrase", "control character"),
])
def test_length_limits_and_control_characters_still_come_first(password, message):
    with pytest.raises(AccountError, match=message):
        check_password_strength(password, **ANN)


def test_a_very_long_password_is_scored_on_its_start():
    check_password_strength("tidy molar chart 2026 blue " * 9, **ANN)  # 243 characters: no error from zxcvbn's limit
