from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_login_page_renders(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"Sign in" in response.content


def test_login_and_logout(world, client):
    response = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302
    assert client.get("/api/v1/me/").json()["username"] == "alice"
    assert client.post("/logout/").status_code == 302
    assert client.get("/api/v1/me/").status_code in (401, 403)


def test_wrong_password_is_refused(world, client):
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content
    assert "_auth_user_id" not in client.session


def test_rate_limit_through_the_real_view(world, client):
    # The configured per-username limit (10/m) blocks the 11th attempt, even with the right password.
    statuses = [
        client.post("/login/", {"username": "bob", "password": "nope"}).status_code for _ in range(10)
    ]
    assert set(statuses) == {200}
    response = client.post("/login/", {"username": "bob", "password": "pw-bob"})
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("spelling", [" bob", "bob ", "\uff42\uff4f\uff42", "\u3000bob"])
def test_a_spelling_that_signs_in_as_the_same_user_shares_its_limit(world, client, spelling):
    """Sign-in strips the name and folds it (NFKC), so " bob", "bob " and "bob" in full-width letters are
    bob: the per-username limit counts them as bob's attempts too."""
    assert client.post("/login/", {"username": spelling, "password": "pw-bob"}).status_code == 302  # bob
    client.post("/logout/")
    variants = ["bob", " bob", "bob ", "\uff42\uff4f\uff42", "\u3000bob", spelling]
    for attempt in range(9):  # with the sign-in above, 10 attempts on bob's name
        refused = client.post("/login/", {"username": variants[attempt % 6], "password": "nope"})
        assert refused.status_code == 200
    response = client.post("/login/", {"username": spelling, "password": "pw-bob"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.post("/login/", {"username": "alice", "password": "pw-alice"}).status_code == 302


def test_rate_limit_per_client_address(world, client):
    # 60/m per address, whatever the usernames: password spraying stops too.
    statuses = [client.post("/login/", {"username": f"u{i}", "password": "x"}).status_code for i in range(61)]
    assert statuses[:60] == [200] * 60
    assert statuses[60] == 429


def test_password_change(world, client):
    client.force_login(world.bob)
    response = client.post(
        "/account/password/",
        {
            "old_password": "pw-bob",
            "new_password1": "a-much-better-pass-42",
            "new_password2": "a-much-better-pass-42",
        },
    )
    assert response.status_code == 302
    world.bob.refresh_from_db()
    assert world.bob.check_password("a-much-better-pass-42")


def test_password_change_requires_login(client):
    response = client.get("/account/password/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
