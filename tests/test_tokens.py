import pytest

from include.nps import tokens


def test_a_signed_link_names_its_invitation():
    token = tokens.sign("survey", "prog-w1", "C-1")
    assert tokens.verify("survey", token) == tokens.Invitation("prog-w1", "C-1")


@pytest.mark.parametrize(
    "tamper", [lambda t: t[:-2] + "AA", lambda t: "x" + t, lambda t: t.split(".")[0], lambda t: ""]
)
def test_altered_or_malformed_tokens_are_refused(tamper):
    token = tokens.sign("survey", "prog-w1", "C-1")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("survey", tamper(token))


def test_a_token_for_one_purpose_does_not_open_another():
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("unsubscribe", tokens.sign("survey", "prog-w1", "C-1"))


def test_rotation_accepts_the_previous_secret(monkeypatch):
    old = tokens.sign("survey", "w", "c")
    monkeypatch.setenv("NPS_SECRET_KEY_PREVIOUS", "test-secret")
    monkeypatch.setenv("NPS_SECRET_KEY", "new-secret")
    assert tokens.verify("survey", old).contact_id == "c"
    monkeypatch.delenv("NPS_SECRET_KEY_PREVIOUS")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("survey", old)
