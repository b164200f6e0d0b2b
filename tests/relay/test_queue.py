"""The durable queue on disk: what a restart finds, whatever the crash left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirsync.relay.dsn import RecipientDsn
from dirsync.relay.errors import RelayStartError
from dirsync.relay.queue import FAILED, PENDING, RELAYED, Queue, QueuedMessage, Recipient, new_id

CONTENT = b"Subject: x\r\n\r\nbody\r\n"


def enqueue(queue: Queue, *recipients: str) -> QueuedMessage:
    msg = QueuedMessage(id=new_id(), sender="ted@example.org",
                        recipients=[Recipient(r, RecipientDsn(frozenset({"SUCCESS"}),
                                                              ("rfc822", r)))
                                    for r in recipients], ret="HDRS", envid="e1", hops=3)
    return queue.enqueue(msg, CONTENT)


def test_enqueue_and_reload(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q")
    queue.open()
    msg = enqueue(queue, "a@x.org", "b@x.org")
    queue.record(msg, [{"r": 0, "state": RELAYED, "status": "2.0.0"},
                       {"attempts": 1, "next": 123.0}])
    [again] = Queue(tmp_path / "q").open()
    assert again.id == msg.id
    assert [r.state for r in again.recipients] == [RELAYED, PENDING]
    assert again.recipients[1].dsn == RecipientDsn(frozenset({"SUCCESS"}), ("rfc822", "b@x.org"))
    assert (again.attempts, again.next_attempt, again.ret, again.envid, again.hops) \
        == (1, 123.0, "HDRS", "e1", 3)
    assert again.read_content() == CONTENT


def test_finished_message_left_behind_is_removed(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q")
    queue.open()
    msg = enqueue(queue, "a@x.org")
    queue.record(msg, [{"r": 0, "state": FAILED, "status": "5.1.1"}])
    # The crash came before the removal: reloading finishes the job.
    assert Queue(tmp_path / "q").open() == []
    assert not list((tmp_path / "q").glob("*.msg"))


def test_torn_journal_line_is_cut_off(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q")
    queue.open()
    msg = enqueue(queue, "a@x.org", "b@x.org")
    queue.record(msg, [{"r": 0, "state": RELAYED}])
    assert msg.path is not None
    with open(msg.path, "ab") as f:
        f.write(b'{"r": 1, "state": "rel')  # the crash hit mid-line
    [again] = Queue(tmp_path / "q").open()
    assert [r.state for r in again.recipients] == [RELAYED, PENDING]
    assert msg.path.read_bytes().endswith(b"\n")
    # Appending goes on after the cut.
    reopened = Queue(tmp_path / "q")
    [third] = reopened.open()
    reopened.record(third, [{"r": 1, "state": RELAYED}])
    assert Queue(tmp_path / "q").open() == []


def test_unacknowledged_temporaries_and_corrupt_files(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    (folder / "tmp").mkdir(parents=True)
    (folder / "tmp" / "half.msg").write_bytes(b"{")  # never answered with 250
    (folder / "bad.msg").write_bytes(b"not json\n")
    assert Queue(folder).open() == []
    assert not (folder / "tmp" / "half.msg").exists()
    assert (folder / "corrupt" / "bad.msg").exists()


def test_message_file_layout(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q")
    queue.open()
    msg = enqueue(queue, "a@x.org")
    assert msg.path is not None
    head, rest = msg.path.read_bytes().split(b"\n", 1)
    envelope = json.loads(head)
    assert envelope["length"] == len(CONTENT) and rest == CONTENT
    assert (msg.path.stat().st_mode & 0o777) == 0o600


def test_unwritable_queue_fails_fast(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RelayStartError, match="not writable"):
        Queue(blocker / "q").open()
