import pytest

from include.nps.core import signed_links


def test_a_signed_link_names_its_invitation():
    token = signed_links.sign("survey", "prog-w1", "C-1")
    assert signed_links.verify("survey", token) == signed_links.Invitation("prog-w1", "C-1")


@pytest.mark.parametrize(
    "tamper", [lambda t: t[:-2] + "AA", lambda t: "x" + t, lambda t: t.split(".")[0], lambda t: ""]
)
def test_altered_or_malformed_tokens_are_refused(tamper):
    token = signed_links.sign("survey", "prog-w1", "C-1")
    with pytest.raises(signed_links.InvalidToken):
        signed_links.verify("survey", tamper(token))


def test_a_token_for_one_purpose_does_not_open_another():
    with pytest.raises(signed_links.InvalidToken):
        signed_links.verify("unsubscribe", signed_links.sign("survey", "prog-w1", "C-1"))


def test_rotation_accepts_the_previous_secret(monkeypatch):
    old = signed_links.sign("survey", "w", "c")
    monkeypatch.setenv("NPS_SECRET_KEY_PREVIOUS", "test-secret")
    monkeypatch.setenv("NPS_SECRET_KEY", "new-secret")
    assert signed_links.verify("survey", old).contact_id == "c"
    monkeypatch.delenv("NPS_SECRET_KEY_PREVIOUS")
    with pytest.raises(signed_links.InvalidToken):
        signed_links.verify("survey", old)


def test_a_link_expires_at_its_time_and_says_so():
    import datetime as dt

    expiry = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    token = signed_links.sign("survey", "prog-w1", "C-1", expiry)
    assert signed_links.verify("survey", token, now=expiry - dt.timedelta(seconds=1)).contact_id == "C-1"
    with pytest.raises(signed_links.ExpiredToken):
        signed_links.verify("survey", token, now=expiry)


def test_an_expiry_cannot_be_stretched_by_editing_the_token():
    import base64
    import datetime as dt

    token = signed_links.sign("survey", "w", "c", dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    signature = token.split(".")[1]
    later = base64.urlsafe_b64encode(b"w\x00c\x009999999999").rstrip(b"=").decode()
    with pytest.raises(signed_links.InvalidToken):
        signed_links.verify("survey", f"{later}.{signature}")


def test_a_csrf_token_is_bound_to_its_link_and_ages_out():
    import datetime as dt

    now = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    day = dt.timedelta(hours=24)
    csrf = signed_links.csrf_token("link-a", now)
    assert signed_links.csrf_valid("link-a", csrf, day, now=now + dt.timedelta(hours=23))
    assert not signed_links.csrf_valid("link-b", csrf, day, now=now)
    assert not signed_links.csrf_valid("link-a", csrf, day, now=now + dt.timedelta(hours=25))
    assert not signed_links.csrf_valid("link-a", csrf, day, now=now - dt.timedelta(minutes=5))  # from the future
    for forged in (None, "", "garbage", "123.", f"{int(now.timestamp())}.AAAA"):
        assert not signed_links.csrf_valid("link-a", forged, day, now=now)


def test_links_signed_with_the_prepared_key_are_the_same_as_before_and_follow_a_new_secret(monkeypatch):
    """The HMAC key is prepared once per secret and purpose: the tokens are byte for byte those of a
    fresh HMAC (links already sent keep working), and a new secret signs with itself at once."""
    import base64
    import hashlib
    import hmac

    def fresh(secret: str, purpose: str, payload: bytes) -> str:
        digest = hmac.new(secret.encode(), purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()[:18]
        encode = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
        return f"{encode(payload)}.{encode(digest)}"

    for secret in ("first-secret", "second-secret", "first-secret"):
        monkeypatch.setenv("NPS_SECRET_KEY", secret)
        for purpose in ("survey", "unsubscribe"):
            assert signed_links.sign(purpose, "w/1", "C-ü") == fresh(secret, purpose, "w/1\x00C-ü\x00".encode())
