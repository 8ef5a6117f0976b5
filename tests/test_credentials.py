"""The credentials file and the coordinator's pool of keys (user guide, Credentials and leases)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import T0, Clock

from assemblyzero.constants import LEASE_RECHECK
from assemblyzero.keys import credentials
from assemblyzero.keys.credentials import Credential, CredentialError
from assemblyzero.keys.gate import KeyGate
from assemblyzero.keys.leases import Busy, LeaseStore
from assemblyzero.keys.pool import Grant, NoCredential, Pool, local_server_name

ENV = "AZ_TEST_ANTHROPIC_KEY"



@pytest.fixture
def path(isolated_home: Path) -> Path:
    """The credentials file the tool reads: $ASSEMBLYZERO_CREDENTIALS (set by conftest)."""
    path = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    assert path.parent == isolated_home
    return path


@pytest.fixture(autouse=True)
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def write(path: Path, entries: list[dict[str, object]], mode: int = 0o600) -> Path:
    path.write_text(json.dumps({"credentials": entries}), encoding="utf-8")
    path.chmod(mode)
    return path


def write_raw(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def offline(name: str, **more: object) -> dict[str, object]:
    return {"name": name, "provider": "offline", **more}


def anthropic(name: str = "team-a", **more: object) -> dict[str, object]:
    return {"name": name, "provider": "anthropic", "key_env": ENV, **more}


# --------------------------------------------------------------------------- credentials.load


def test_missing_file_is_an_empty_pool(path: Path) -> None:
    assert not path.exists()
    creds = credentials.load()
    assert creds.path == path
    assert creds.entries == ()
    assert creds.secrets == {}
    assert creds.problems == ()
    assert creds.usable("anthropic") == []


def test_key_env_present_resolves_the_secret(path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "sk-ant-from-the-environment")
    write(path, [anthropic(max_concurrent=2, base_url="http://localhost:1")], mode=0o644)
    creds = credentials.load()
    assert creds.secrets == {"team-a": "sk-ant-from-the-environment"}
    assert creds.problems == ()
    assert creds.usable("anthropic") == [Credential(
        "team-a", "anthropic", key_env=ENV, literal=False, max_concurrent=2, enabled=True,
        base_url="http://localhost:1")]


def test_key_env_missing_is_a_problem_not_a_usable_key(path: Path) -> None:
    write(path, [anthropic()])
    creds = credentials.load()
    assert [c.name for c in creds.entries] == ["team-a"]
    assert creds.listed("anthropic")
    assert creds.usable("anthropic") == []
    assert "team-a" not in creds.secrets
    [problem] = creds.problems
    assert "'team-a'" in problem
    assert ENV in problem


def test_key_env_set_but_empty_is_a_problem(path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "")
    write(path, [anthropic()])
    creds = credentials.load()
    assert creds.usable("anthropic") == []
    assert len(creds.problems) == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_literal_key_in_a_readable_file_is_refused(path: Path, mode: int) -> None:
    write(path, [{"name": "lit", "provider": "anthropic", "key": "sk-ant-literal-secret"}],
          mode=mode)
    with pytest.raises(CredentialError) as err:
        credentials.load()
    assert f"chmod 600 {path}" in str(err.value)
    assert f"{mode:o}" in str(err.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_literal_key_in_a_private_file_is_used(path: Path, mode: int) -> None:
    write(path, [{"name": "lit", "provider": "anthropic", "key": "sk-ant-literal-secret"}],
          mode=mode)
    creds = credentials.load()
    assert creds.secrets == {"lit": "sk-ant-literal-secret"}
    [cred] = creds.usable("anthropic")
    assert cred.literal
    assert cred.key_env is None


def test_key_env_entries_need_no_private_file(path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "secret-value")
    write(path, [anthropic()], mode=0o644)
    assert credentials.load().usable("anthropic")


def test_explicit_path_argument(tmp_path: Path) -> None:
    other = write(tmp_path / "elsewhere.json", [offline("o1")])
    creds = credentials.load(other)
    assert creds.path == other
    assert [c.name for c in creds.usable("offline")] == ["o1"]


@pytest.mark.parametrize("text", [
    "{not json",
    "",
    "[]",
    '"credentials"',
    "{}",
    '{"credentials": {"name": "a"}}',
    '{"credentials": null}',
], ids=["malformed", "empty", "list", "string", "no-credentials", "credentials-object",
        "credentials-null"])
def test_file_that_is_not_a_credentials_object_is_refused(path: Path, text: str) -> None:
    write_raw(path, text)
    with pytest.raises(CredentialError) as err:
        credentials.load()
    assert str(path) in str(err.value)


BAD_ENTRIES = {  # each after one good entry: the bad one is entry 2
    "duplicate-name": ([offline("a"), offline("a")], "entries 2 and 3", "same name"),
    "bad-name-dotdot": ([offline("../x")], "entry 2", "name"),
    "bad-name-empty": ([offline("")], "entry 2", "name"),
    "bad-name-missing": ([{"provider": "offline"}], "entry 2", "name"),
    "not-an-object": (["team-a"], "entry 2", "object"),
    "unknown-field": ([offline("a", secret="x")], "entry 2", "secret"),
    "key-and-key-env": ([anthropic("a", key="sk-ant-xxxxxxxxxx")], "entry 2", "not both"),
    "max-concurrent-0": ([offline("a", max_concurrent=0)], "entry 2", "max_concurrent"),
    "max-concurrent-true": ([offline("a", max_concurrent=True)], "entry 2", "max_concurrent"),
    "max-concurrent-str": ([offline("a", max_concurrent="2")], "entry 2", "max_concurrent"),
    "max-concurrent-float": ([offline("a", max_concurrent=1.5)], "entry 2", "max_concurrent"),
    "enabled-yes": ([offline("a", enabled="yes")], "entry 2", "enabled"),
    "no-provider": ([{"name": "a", "key_env": ENV}], "entry 2", "provider"),
    "unknown-provider": ([{"name": "a", "provider": "antropic"}], "entry 2", "provider"),
    "no-key": ([{"name": "a", "provider": "anthropic"}], "entry 2", "key_env"),
    "empty-key": ([{"name": "a", "provider": "anthropic", "key": ""}], "entry 2", "key"),
    "key-env-not-str": ([anthropic("a", key_env=5)], "entry 2", "key_env"),
    "base-url-not-str": ([offline("a", base_url=1)], "entry 2", "base_url"),
    "structured-str": ([offline("a", structured="false")], "entry 2", "structured"),
    "structured-int": ([offline("a", structured=0)], "entry 2", "structured"),
}


@pytest.mark.parametrize(("entries", "where", "about"), BAD_ENTRIES.values(),
                         ids=BAD_ENTRIES.keys())
def test_bad_entry_is_refused_naming_it(path: Path, entries: list[dict[str, object]],
                                        where: str, about: str) -> None:
    write(path, [offline("fine"), *entries])
    with pytest.raises(CredentialError) as err:
        credentials.load()
    message = str(err.value)
    assert f"credentials file {path}, {where}: " in message or (
        f"credentials file {path}: {where} " in message)
    assert about in message
    assert "'a'" not in message and "'../x'" not in message  # by position, never by value


# --- messages never echo a secret (a key pasted into the wrong field) ----------------

ANT_KEY = "sk-ant-api03-" + "Qx7vLm2Rt9" * 4  # a valid id too: [A-Za-z0-9_-], 53 chars
GH_KEY = "ghp_" + "Zr4Kw8Np2Y" * 4  # a valid environment variable name too
PLAIN = "Tr0ub4dor&3 correct horse"  # no known shape: still never quoted

HOSTILE = {
    "key-as-name": ({"name": ANT_KEY, "provider": "offline"}, ANT_KEY, "'name' looks like"),
    "gh-key-as-name": ({"name": GH_KEY, "provider": "offline"}, GH_KEY, "'name' looks like"),
    "bad-id-name": ({"name": ANT_KEY + "!", "provider": "offline"}, ANT_KEY, "(got a string)"),
    "plain-name": ({"name": PLAIN, "provider": "offline"}, PLAIN, "'name' must be"),
    "key-as-field": ({"name": "a", "provider": "offline", ANT_KEY: 1}, ANT_KEY,
                     "1 unknown field(s), not shown"),
    "plain-as-field": ({"name": "a", "provider": "offline", PLAIN: 1}, PLAIN,
                       "1 unknown field(s), not shown"),
    "gh-key-as-field": ({"name": "a", "provider": "offline", GH_KEY: 1, "colour": 1}, GH_KEY,
                        "unknown field(s) colour and 1 more, not shown"),
    "key-as-key-env": (anthropic("a", key_env=ANT_KEY), ANT_KEY, "not the key itself"),
    "gh-key-as-key-env": (anthropic("a", key_env=GH_KEY), GH_KEY, "not the key itself"),
    "key-as-provider": ({"name": "a", "provider": ANT_KEY}, ANT_KEY, "'provider' must be one"),
    "plain-as-provider": ({"name": "a", "provider": PLAIN, "key": "x"}, PLAIN,
                          "'provider' must be one"),
    "key-in-base-url-object": (offline("a", base_url={"token": ANT_KEY}), ANT_KEY,
                               "'base_url' must be a string (got an object)"),
    "key-in-base-url-list": (offline("a", base_url=[PLAIN]), PLAIN,
                             "'base_url' must be a string (got a list)"),
    "key-as-enabled": (offline("a", enabled=ANT_KEY), ANT_KEY, "(got a string)"),
    "key-as-max-concurrent": (offline("a", max_concurrent=PLAIN), PLAIN, "(got a string)"),
}


@pytest.mark.parametrize(("entry", "secret", "about"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_secret_in_the_wrong_place_is_never_echoed(path: Path, entry: dict[str, object],
                                                     secret: str, about: str) -> None:
    write(path, [offline("fine"), offline("other"), entry])
    with pytest.raises(CredentialError) as err:
        credentials.load()
    message = str(err.value)
    assert f"credentials file {path}, entry 3: " in message and about in message
    for part in (secret, secret.upper(), secret[:12], secret[-12:],
                 secret.upper().replace("-", "_")):  # nor the example variable made from it
        assert part not in message


def test_a_duplicate_key_shaped_name_is_reported_by_position(path: Path) -> None:
    name = "prod-" + "Kd93mXq0" * 5  # a valid id, no known shape: a key of some other vendor
    write(path, [offline("fine"), offline(name), offline(name)])
    with pytest.raises(CredentialError) as err:
        credentials.load()
    message = str(err.value)
    assert message == (f"credentials file {path}: entries 2 and 3 have the same name; "
                       "rename one of the two entries")


def test_an_unknown_short_field_is_still_named(path: Path) -> None:
    write(path, [offline("a", max_concurent=2)])
    with pytest.raises(CredentialError, match=r"entry 1: unknown field\(s\) max_concurent; "
                                              r"fix or remove them \(the fields are name, "):
        credentials.load()


def test_every_message_is_masked_with_the_files_own_secrets(
        isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last line of defence: a secret the file holds is masked even where a message
    could only quote it by accident (here: the file sits in a folder named like it)."""
    literal, from_env = "hunter2-literal-7f3a", "hunter2-from-env-9b1c"
    monkeypatch.setenv(ENV, from_env)
    for secret in (literal, from_env):
        folder = isolated_home / secret
        folder.mkdir()
        path = write(folder / "credentials.json",
                     [anthropic("env"), {"name": "lit", "provider": "anthropic", "key": literal},
                      offline("x", enabled="no")])
        with pytest.raises(CredentialError) as err:
            credentials.load(path)
        message = str(err.value)
        assert secret not in message and "/***/credentials.json, entry 3: 'enabled'" in message


def test_a_key_shaped_path_is_masked_in_a_message(isolated_home: Path) -> None:
    folder = isolated_home / ANT_KEY
    folder.mkdir()
    path = write_raw(folder / "credentials.json", "{not json")
    with pytest.raises(CredentialError) as err:
        credentials.load(path)
    assert ANT_KEY not in str(err.value) and "is not valid JSON" in str(err.value)


def test_a_missing_variable_problem_is_masked_too(path: Path) -> None:
    secret = "looks-like-a-name-but-is-a-key"  # one entry's name is another's literal key
    write(path, [anthropic(secret), {"name": "lit", "provider": "anthropic", "key": secret}])
    creds = credentials.load()
    assert creds.problems == (f"credential '***': environment variable {ENV} is not set; "
                              "this key is not used",)


def test_offline_entry_needs_no_key(path: Path) -> None:
    write(path, [offline("o1", max_concurrent=3)])
    creds = credentials.load()
    assert creds.problems == ()
    assert creds.secrets == {"o1": ""}
    [cred] = creds.usable("offline")
    assert (cred.name, cred.max_concurrent, cred.enabled) == ("o1", 3, True)


def test_structured_defaults_to_true_and_false_is_kept(path: Path) -> None:
    write(path, [offline("o1"), offline("o2", structured=False), offline("o3", structured=True)])
    assert [c.structured for c in credentials.load().entries] == [True, False, True]


def test_usable_skips_disabled_and_other_providers(path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "k" * 20)
    write(path, [offline("o1"), offline("o2", enabled=False), offline("o3", enabled=True),
                 anthropic("a1")])
    creds = credentials.load()
    assert [c.name for c in creds.usable("offline")] == ["o1", "o3"]
    assert [c.name for c in creds.usable("anthropic")] == ["a1"]
    assert creds.usable("openai") == []
    assert creds.listed("offline")
    assert not creds.listed("openai")


# --------------------------------------------------------------------------- Pool.for_models



@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LeaseStore:
    return LeaseStore(tmp_path / "state", clock=clock)


def make_pool(store: LeaseStore, clock: Clock, *specs: str) -> Pool:
    pool = Pool.for_models(specs, store=store)
    assert pool is not None
    pool.clock = clock
    return pool


def test_offline_models_without_credentials_file_need_no_pool(path: Path,
                                                              store: LeaseStore) -> None:
    assert Pool.for_models(("offline:default", "offline:reviewer"), store=store) is None
    assert not store.dir.exists()  # nothing leased, nothing written


def test_offline_models_lease_offline_entries(path: Path, store: LeaseStore,
                                              clock: Clock) -> None:
    write(path, [offline("o1"), offline("o2", max_concurrent=2)])
    pool = make_pool(store, clock, "offline:default", "offline:other")
    assert pool.providers == ("offline",)
    assert sorted(pool.stats) == ["o1", "o2"]
    grant = pool.take("41")
    assert isinstance(grant, Grant)
    assert grant.names == ("o1",)
    assert [h["item"] for h in store.peek("o1")["holders"]] == ["41"]


def test_missing_provider_is_no_credential_naming_provider_and_file(
    path: Path, store: LeaseStore
) -> None:
    write(path, [offline("o1")])
    with pytest.raises(NoCredential) as err:
        Pool.for_models(("anthropic:x",), store=store)
    message = str(err.value)
    assert "'anthropic'" in message
    assert str(path) in message
    assert "lists no 'anthropic' credential" in message


def test_missing_provider_without_any_file(path: Path, store: LeaseStore) -> None:
    with pytest.raises(NoCredential) as err:
        Pool.for_models(("offline:default", "anthropic:x"), store=store)
    assert "'anthropic'" in str(err.value)
    assert str(path) in str(err.value)


def test_only_disabled_entry_is_no_credential_saying_disabled(
    path: Path, store: LeaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "k" * 20)
    write(path, [anthropic("a1", enabled=False)])
    with pytest.raises(NoCredential) as err:
        Pool.for_models(("anthropic:x",), store=store)
    assert "'a1' is disabled" in str(err.value)
    assert str(path) in str(err.value)


def test_entry_with_missing_env_is_no_credential_naming_the_variable(
    path: Path, store: LeaseStore
) -> None:
    write(path, [anthropic("a1")])
    with pytest.raises(NoCredential) as err:
        Pool.for_models(("anthropic:x",), store=store)
    assert "'a1'" in str(err.value)
    assert ENV in str(err.value)


def test_no_secret_value_in_no_credential_message(path: Path, store: LeaseStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "sk-ant-VERYSECRETVALUE")
    write(path, [anthropic("a1", enabled=False)])
    with pytest.raises(NoCredential) as err:
        Pool.for_models(("anthropic:x",), store=store)
    assert "VERYSECRET" not in str(err.value)


# --------------------------------------------------------------------------- Pool.take


@pytest.fixture
def three(path: Path, store: LeaseStore, clock: Clock) -> Pool:
    write(path, [offline("a"), offline("b"), offline("c")])
    return make_pool(store, clock, "offline:default")


def test_take_round_robins_across_keys(three: Pool) -> None:
    names = []
    for n in range(6):
        grant = three.take(str(n))
        assert isinstance(grant, Grant)
        names += grant.names
        three.give_back(grant, succeeded=True)
    assert names == ["a", "b", "c", "a", "b", "c"]
    assert {k: s.attempts for k, s in three.stats.items()} == {"a": 2, "b": 2, "c": 2}


def test_take_is_busy_when_every_key_is_held(three: Pool, store: LeaseStore,
                                             clock: Clock) -> None:
    grants = [three.take(str(n)) for n in range(3)]
    assert all(isinstance(g, Grant) for g in grants)
    assert sorted(n for g in grants for n in g.names) == ["a", "b", "c"]  # type: ignore[union-attr]
    got = three.take("4")
    assert isinstance(got, Busy)
    assert got.name == "offline"
    assert "every offline credential is held or cooling down" in got.reason
    assert got.until == T0 + LEASE_RECHECK  # held by others: look again soon
    three.give_back(grants[1], succeeded=True)  # type: ignore[arg-type]
    again = three.take("4")
    assert isinstance(again, Grant)
    assert again.names == grants[1].names  # type: ignore[union-attr]


def test_take_waits_for_the_earliest_cooldown(three: Pool, clock: Clock) -> None:
    ends = {name: three.rate_limited(name, retry) for name, retry in
            (("a", 30), ("b", 5), ("c", 50))}
    got = three.take("1")
    assert isinstance(got, Busy)
    assert got.until == ends["b"]
    clock.now = ends["b"] + 0.01
    grant = three.take("1")
    assert isinstance(grant, Grant)
    assert grant.names == ("b",)


def test_rate_limited_counts_429s_and_cools_the_key_for_everyone(
    three: Pool, clock: Clock, tmp_path: Path
) -> None:
    first = three.rate_limited("a", 5)
    clock.now = first + 1
    second = three.rate_limited("a", None)
    stats = three.stats["a"]
    assert stats.rate_limited == 2
    assert stats.cooldown_seconds == pytest.approx((first - T0) + (second - clock.now))
    assert 5 <= first - T0 <= 6
    assert three.stats["b"].rate_limited == three.stats["c"].rate_limited == 0
    other = LeaseStore(tmp_path / "state", clock=clock)  # another run on the machine
    got = other.acquire("a", 1, "other-run", "9")
    assert isinstance(got, Busy)
    assert got.until == second


def test_take_with_two_providers_releases_the_first_when_the_second_is_busy(
    path: Path, store: LeaseStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "k" * 20)
    write(path, [anthropic("a1"), offline("o1")])
    pool = make_pool(store, clock, "anthropic:drafter", "offline:reviewer")
    assert pool.providers == ("anthropic", "offline")
    blocker = store.acquire("o1", 1, "other-run", "x")  # another run holds the offline key
    got = pool.take("1")
    assert isinstance(got, Busy)
    assert store.peek("a1")["holders"] == []  # not left holding the anthropic key
    assert pool.stats["a1"].attempts == 0
    store.release(blocker)  # type: ignore[arg-type]
    grant = pool.take("1")
    assert isinstance(grant, Grant)
    assert grant.names == ("a1", "o1")
    assert pool.secrets(grant) == {"a1": "k" * 20, "o1": ""}


def test_disabled_for_the_run_keys_are_skipped(three: Pool) -> None:
    three.disable("a", "401")
    three.disable("b", "403")
    names = []
    for n in range(3):
        grant = three.take(str(n))
        assert isinstance(grant, Grant)
        names += grant.names
        three.give_back(grant, succeeded=True)
    assert names == ["c", "c", "c"]
    three.disable("c", "401")
    with pytest.raises(NoCredential, match="refused"):
        three.take("4")


def test_take_gives_back_earlier_leases_when_a_later_provider_has_no_key_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"credentials": [
        {"name": "off", "provider": "offline"}, {"name": "c1", "provider": "cmd"}]}))
    monkeypatch.setenv("ASSEMBLYZERO_CREDENTIALS", str(path))
    store = LeaseStore(tmp_path / "state")
    pool = Pool.for_models(("offline:x", "cmd:y"), store=store)
    assert pool is not None and pool.providers == ("offline", "cmd")
    pool.disable("c1", "refused (401/403)")
    with pytest.raises(NoCredential):
        pool.take("1")
    assert store.peek("off")["holders"] == []  # the offline lease was given back


def test_a_local_server_needs_no_credential_and_is_a_key_named_for_its_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSEMBLYZERO_CREDENTIALS", str(tmp_path / "none.json"))
    with pytest.raises(NoCredential):
        Pool.for_models(("openai:llama3",))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    pool = Pool.for_models(("openai:llama3",), store=LeaseStore(tmp_path / "leases"))
    assert pool is not None and list(pool.stats) == ["local.127.0.0.1-11434"]  # none refused
    local = pool.credential("local.127.0.0.1-11434")
    assert (local.provider, local.base_url, pool.creds.secrets[local.name]) == (
        "openai", "http://127.0.0.1:11434/v1", "")
    grant = pool.take("LLD-001")
    assert not isinstance(grant, Busy) and grant.names == ("local.127.0.0.1-11434",)
    until = pool.rate_limited("local.127.0.0.1-11434", 5)  # its 429s rest it like any key
    assert until > time.time() and pool.stats["local.127.0.0.1-11434"].rate_limited == 1


def test_a_listed_openai_credential_is_used_instead_of_a_local_server_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"credentials": [
        {"name": "team", "provider": "openai", "key": "sk-test-1234567890abcdef"}]}))
    path.chmod(0o600)
    monkeypatch.setenv("ASSEMBLYZERO_CREDENTIALS", str(path))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    pool = Pool.for_models(("openai:llama3",), store=LeaseStore(tmp_path / "leases"))
    assert pool is not None and list(pool.stats) == ["team"]


def test_the_secrets_payload_carries_each_keys_structured_switch(
        path: Path, store: LeaseStore, clock: Clock) -> None:
    write(path, [offline("o1", structured=False, base_url="http://127.0.0.1:9/v1")])
    gate = KeyGate(make_pool(store, clock, "offline:default"))
    grant = gate.take("1")
    assert isinstance(grant, Grant)
    assert gate.secrets(grant) == {"keys": {"o1": {
        "secret": "", "provider": "offline", "base_url": "http://127.0.0.1:9/v1",
        "structured": False}}, "mask": [],
        "pace": {"o1": {"limits": {}, "others": []}}}


@pytest.mark.parametrize(("url", "name"), [
    ("http://127.0.0.1:11434/v1", "local.127.0.0.1-11434"),
    ("http://user:secret-pass@localhost:8000/v1", "local.localhost-8000"),  # no userinfo
    ("http://[::1]:8080/v1", "local.__1-8080"),
    ("http://[fe80::1%25eth0]:8000", "local.fe80__1_25eth0-8000"),
    ("http://host:abc/v1", "local.host"),  # a bad port is the server's error, not ours
    ("http://..:1/", "local.server-1"),
    ("http://" + "a" * 80 + ".example:9/", "local." + "a" * 48 + "-9"),  # the port kept
])
def test_a_local_server_key_name_is_safe_and_never_a_credentials_own(url: str,
                                                                      name: str) -> None:
    assert local_server_name(url) == name

