"""The audit trail (stored and logged) and the hourly invite limit, under concurrent commands."""

from __future__ import annotations

import dbm.dumb
import logging
import shelve
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import INVITER, MEMBER, polaris_env

from polarisbot.audit import AuditTrail
from polarisbot.limits import WINDOW, HourlyLimit
from polarisbot.storage import Storage

# --- the limit, in the bot ----------------------------------------------------------


def test_ten_invites_at_once_with_five_an_hour_send_exactly_five(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_MAX_INVITES_PER_HOUR="5"))
    start = threading.Barrier(10)
    answers: list[str] = []

    def invite(n: int) -> None:
        start.wait()
        answers.append(
            chat.plugin.desk.invite_for(
                INVITER, f"person{n}@example.com", where="direct", respond=lambda _: None
            )
        )

    threads = [threading.Thread(target=invite, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sum(a == "Inviting 1 address to Polaris…" for a in answers) == 5
    refused = [a for a in answers if "not sent" in a]
    assert len(refused) == 5
    assert all("the limit of 5 invites an hour per person is reached" in a for a in refused)
    assert all("frees up at" in a for a in refused)
    from chat import wait_for

    assert wait_for(lambda: len(sandbox.calls("createUser")) >= 5)
    assert chat.silent(0.3)
    assert len(sandbox.calls("createUser")) == 5


def test_chat_commands_arriving_together_respect_the_limit(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_MAX_INVITES_PER_HOUR="5"))
    chat.as_user(INVITER)

    for n in range(10):
        chat.send(f"!polaris invite burst{n}@example.com")
    replies = chat.replies(15)

    assert sum(r.endswith(": invited") for r in replies) == 5
    assert sum("not sent: the limit of 5 invites an hour" in r for r in replies) == 5
    assert len(sandbox.calls("createUser")) == 5


def test_a_batch_past_the_limit_sends_what_fits_and_names_the_rest(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_MAX_INVITES_PER_HOUR="3"))
    chat.as_user(INVITER)

    chat.send("!polaris invite a@example.com b@example.com x@other.org c@example.com d@example.com")

    assert chat.reply() == "Inviting 3 addresses to Polaris…"
    lines = chat.reply().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "a@example.com",
        "b@example.com",
        "x@other.org",
        "c@example.com",
        "d@example.com",
    ]
    assert lines[2].startswith("x@other.org: domain not allowed")  # not counted
    assert lines[4].startswith("d@example.com: not sent: the limit of 3 invites an hour")
    assert sorted(c["email"] for c in sandbox.calls("createUser")) == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]


def test_the_limit_is_per_person(sandbox, start_bot):
    chat = start_bot(
        polaris_env(sandbox, POLARIS_MAX_INVITES_PER_HOUR="1", POLARIS_APPROVAL="auto")
    )
    chat.as_user(INVITER)
    chat.send("!polaris invite first@example.com")
    assert chat.replies(2)[1] == "first@example.com: invited"
    assert "not sent" in chat.ask("!polaris invite second@example.com")

    chat.as_user(MEMBER, email="member@example.com")
    chat.send("!polaris request")

    assert chat.replies(2)[1] == "member@example.com: invited"
    assert "not sent" in chat.ask("!polaris request")


def test_an_approval_past_the_approvers_limit_leaves_the_request_pending(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_MAX_INVITES_PER_HOUR="1"))
    chat.as_user(INVITER)
    chat.send("!polaris invite first@example.com")
    chat.replies(2)
    chat.as_user(MEMBER, email="member@example.com")
    request_id = chat.plugin.desk.request_for(
        MEMBER, "member@example.com", where="direct", respond=lambda _: None
    ).split()[1]
    assert request_id in chat.reply()  # the inviter's notification
    chat.as_user(INVITER)

    answer = chat.ask(f"!polaris approve {request_id}")

    assert answer.startswith(f"I can't approve {request_id} now: the limit of 1 invites an hour")
    assert answer.endswith("It stays pending.")
    assert [r.id for r in chat.plugin.approvals.pending()] == [request_id]
    assert [c["email"] for c in sandbox.calls("createUser")] == ["first@example.com"]


# --- the audit trail, in the bot ----------------------------------------------------


def test_every_attempt_is_audited_in_storage_and_as_one_log_line(sandbox, start_bot, caplog):
    caplog.set_level(logging.INFO, logger="polarisbot.audit")
    chat = start_bot(polaris_env(sandbox))
    chat.as_user(INVITER)
    chat.send("!polaris invite Audit.Me@example.com eve@evil.example")
    chat.replies(2)

    lines = [r for r in caplog.records if r.name == "polarisbot.audit"]

    assert {r.levelno for r in lines} == {logging.INFO}
    invited = next(r.getMessage() for r in lines if "audit.me@example.com" in r.getMessage())
    assert invited.startswith(f"action=invite who={INVITER} email=audit.me@example.com ")
    assert "outcome=INVITED roles=ReadOnlyAdmin where=direct duration_ms=" in invited
    refused = next(r.getMessage() for r in lines if "eve@evil.example" in r.getMessage())
    assert "outcome=DOMAIN" in refused and "duration_ms" not in refused
    secret = polaris_env(sandbox)["POLARIS_CLIENT_SECRET"]
    assert all(secret not in r.getMessage() for r in lines)

    shown = chat.ask("!polaris audit").splitlines()
    assert shown[0] == "Newest 2 audit entries:"
    assert "invite  eve@evil.example  DOMAIN" in shown[1]  # newest first
    assert "invite  audit.me@example.com  INVITED" in shown[2] and f"by {INVITER}" in shown[2]


def test_audit_filters_by_address_and_counts(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox))
    chat.as_user(INVITER)
    for n in range(3):
        chat.send(f"!polaris invite counted{n}@example.com")
        chat.replies(2)

    assert chat.ask("!polaris audit 2").splitlines()[0] == "Newest 2 audit entries:"
    only = chat.ask("!polaris audit Counted1@example.com").splitlines()
    assert only[0] == "Newest 1 audit entry for counted1@example.com:"
    assert chat.ask("!polaris audit nobody@example.com") == (
        "The audit trail has no entries for nobody@example.com."
    )


def test_a_denial_reason_is_quoted_in_the_log_and_made_safe_in_chat(sandbox, start_bot, caplog):
    caplog.set_level(logging.INFO, logger="polarisbot.audit")
    chat = start_bot(polaris_env(sandbox))
    request_id = chat.plugin.desk.request_for(
        MEMBER, "member@example.com", where="C0HELP", respond=lambda _: None
    ).split()[1]
    assert request_id in chat.reply()  # the inviter's notification
    chat.as_user(INVITER)

    chat.send(f"!polaris deny {request_id} no <!here> access\nfake=line")
    told, answer = chat.replies(2)  # the requester's message, then the answer

    assert "denied by" in told and "<!here>" not in told
    assert answer.startswith(f"Denied request {request_id}")

    denial = next(r.getMessage() for r in caplog.records if "action=deny" in r.getMessage())
    assert "\n" not in denial
    assert f"approver={INVITER}" in denial and f"who={MEMBER}" in denial
    assert 'reason="no <!here> access\\nfake=line"' in denial
    shown = chat.ask("!polaris audit 1")
    assert "DENIED" in shown and "<!here>" not in shown


def test_audit_is_for_direct_messages_and_inviters(chat):
    chat.send_in_channel("!polaris audit")
    reply = chat.reply()
    assert "direct message" in reply or "chatroom" in reply

    chat.as_user(MEMBER)
    assert "not allowed" in chat.ask("!polaris audit")


# --- the libraries, on a real shelf (it returns copies, as Errbot's Shelf storage does) ---


@contextmanager
def dumb_shelf(path: Path) -> Iterator[Storage]:
    """Storage on a dbm.dumb shelf (Python's fallback dbm, the one that never reuses space).

    Closed as the plugin closes it: waiting writes first, then the shelf.
    """
    with shelve.Shelf(dbm.dumb.open(str(path), "c"), protocol=2) as shelf:
        storage = Storage(shelf, threading.RLock())
        try:
            yield storage
        finally:
            storage.close()


def size_of(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir())


def test_library_audit_keeps_the_newest_entries_and_survives_reopening(tmp_path):
    with dumb_shelf(tmp_path / "store") as storage:
        trail = AuditTrail(storage, keep=10)
        for n in range(50):
            trail.record("invite", who="U1", email=f"p{n}@example.com", outcome="INVITED")
        assert len(trail) == 10

    with dumb_shelf(tmp_path / "store") as storage:
        trail = AuditTrail(storage, keep=10)
        newest = trail.newest(100)
        assert len(trail) == 10
        assert [e.email for e in newest] == [f"p{n}@example.com" for n in range(49, 39, -1)]
        assert [e.email for e in trail.newest(5, "P39@example.com")] == []
        assert [e.email for e in trail.newest(5, "P45@example.com")] == ["p45@example.com"]
        assert sorted(storage.read("audit:")) == sorted(f"audit:{n}" for n in range(10))

        # Recording goes on after the newest entry it read back.
        trail.record("deny", who="U2", email="next@example.com", outcome="DENIED")
    with dumb_shelf(tmp_path / "store") as storage:
        shown = [e.email for e in AuditTrail(storage, keep=10).newest(2)]
        assert shown == ["next@example.com", "p49@example.com"]


def test_library_audit_entries_written_from_many_threads_are_all_kept(tmp_path):
    with dumb_shelf(tmp_path / "store") as storage:
        trail = AuditTrail(storage)

        def write(n: int) -> None:
            for k in range(20):
                trail.record("invite", who=f"U{n}", email=f"{n}.{k}@example.com", outcome="X")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(trail) == 160
        assert len({e.email for e in trail.newest(100)}) == 100

    with dumb_shelf(tmp_path / "store") as storage:
        reread = AuditTrail(storage)
        assert len(reread) == 160
        assert len(storage.read("audit:")) == 160


def test_library_audit_storage_stays_small_after_thousands_of_entries(tmp_path):
    # The first design rewrote a growing block of entries on every record; on dbm.dumb
    # each rewrite that outgrew its slot was appended anew: 145 MB after 5,000 entries.
    def record(trail: AuditTrail, count: int) -> None:
        for n in range(count):
            trail.record(
                "invite",
                who=f"U0INV{n % 100:04d}",
                email=f"person-{n:05d}@example.com",
                outcome="INVITED",
                roles="ReadOnlyAdmin",
                where="C0OPS",
                duration_ms=412,
            )

    with dumb_shelf(tmp_path / "store") as storage:
        record(AuditTrail(storage, keep=1000), 3000)
    after_3000 = size_of(tmp_path)
    with dumb_shelf(tmp_path / "store") as storage:
        record(AuditTrail(storage, keep=1000), 3000)
    after_6000 = size_of(tmp_path)

    # 1,000 entries of one 512-byte dbm.dumb block each, plus the key index.
    assert after_3000 < 700_000
    assert after_6000 <= after_3000 * 1.02


def test_library_an_unreadable_audit_entry_is_skipped(tmp_path):
    with dumb_shelf(tmp_path / "store") as storage:
        trail = AuditTrail(storage)
        for n in range(3):
            trail.record("invite", who="U1", email=f"p{n}@example.com", outcome="INVITED")
        assert storage.flush()
        with storage.lock:
            storage.store["audit:1"] = "not an entry"

        reread = AuditTrail(storage)

        assert [e.email for e in reread.newest()] == ["p2@example.com", "p0@example.com"]


def test_library_limit_reservations_from_many_threads_never_exceed_it(tmp_path):
    with dumb_shelf(tmp_path / "store") as storage:
        limit = HourlyLimit(storage, 5)
        start = threading.Barrier(10)
        granted: list[int] = []

        def take() -> None:
            start.wait()
            granted.append(limit.reserve("U1", 1).granted)

        threads = [threading.Thread(target=take) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sum(granted) == 5
        assert limit.used("U1") == 5 and limit.used("U2") == 0
        assert storage.flush()
        assert len(storage.store["limit:U1"]) == 5


def test_library_the_hour_slides(tmp_path):
    now = [1_000_000.0]
    with dumb_shelf(tmp_path / "store") as storage:
        limit = HourlyLimit(storage, 3, clock=lambda: now[0])
        assert limit.reserve("U1", 2).granted == 2
        now[0] += 600
        full = limit.reserve("U1", 2)
        assert (full.granted, full.refused) == (1, 1)
        assert full.frees_at == pytest.approx(1_000_000.0 + WINDOW)
        assert "in about 50 min" in full.sentence()

        now[0] = 1_000_000.0 + WINDOW + 1  # the first two have left the hour
        assert limit.reserve("U1", 5).granted == 2


def test_library_limits_are_stored_one_key_a_person_and_read_back(tmp_path):
    now = [1_000_000.0]
    with dumb_shelf(tmp_path / "store") as storage:
        limit = HourlyLimit(storage, 3, clock=lambda: now[0])
        limit.reserve("U1", 2)
        now[0] += 1800
        limit.reserve("U2", 3)
        assert storage.flush()
        assert storage.read("limit:") == {
            "limit:U1": [1_000_000.0, 1_000_000.0],
            "limit:U2": [1_001_800.0] * 3,
        }

    now[0] += 1801  # U1's places have left the hour, U2's have not
    with dumb_shelf(tmp_path / "store") as storage:
        limit = HourlyLimit(storage, 3, clock=lambda: now[0])
        assert (limit.used("U1"), limit.used("U2")) == (0, 3)
        assert limit.reserve("U1", 5).granted == 3
        assert limit.reserve("U2", 1).granted == 0


def test_library_a_failed_write_is_logged_and_the_writes_after_it_still_land(caplog):
    class Flaky(dict):
        def __setitem__(self, key: str, value: object) -> None:
            if key == "limit:BROKEN":
                raise OSError("disk full")
            super().__setitem__(key, value)

    store = Flaky()
    storage = Storage(store, threading.RLock())
    limit = HourlyLimit(storage, 3)
    limit.reserve("BROKEN", 1)
    limit.reserve("U1", 1)
    storage.close()

    assert list(store) == ["limit:U1"]
    assert limit.used("BROKEN") == 1  # the reservation stands until a restart
    assert any("could not store limit:BROKEN" in r.getMessage() for r in caplog.records)

    # After close (the plugin is stopping), a change is written at once.
    limit.reserve("U2", 1)
    assert sorted(store) == ["limit:U1", "limit:U2"]
