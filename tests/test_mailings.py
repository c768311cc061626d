"""A wave-wide mailing put in the ledger in one statement: every recipient once, in chunks of the
wave's size at the boundaries (a chunk of one, exactly N chunks, N chunks and one more), the
reminder only to those who have not answered, and a re-run adds nobody twice. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from include.nps.core import storage
from include.nps.delivery import outbox
from include.nps.wave import audience, mailings
from tests.factories import contact, planned_wave, write_csv


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_engine(request):
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


def _wave_of(engine, folder, contacts: int):
    rows = [contact(f"C{n:04d}", email=f"c{n}@a{n % 7}.example") for n in range(contacts)]
    path = write_csv(folder / "c.csv", rows)
    wave = planned_wave(engine, path)
    loaded = audience.load_contacts(engine, wave.wave_id, path)
    audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, 90, wave.open_at)
    return wave


def _answer(engine, wave_id: str, contact_id: str) -> None:
    row = {"w": wave_id, "c": contact_id, "t": storage.utcnow()}
    sql = "INSERT INTO responses (wave_id, contact_id, score, answered_at, updated_at) VALUES (:w, :c, 9, :t, :t)"
    storage.execute(engine, sql, row)


def _ledger(engine, wave_id: str, kind: str) -> dict[str, int]:
    rows = storage.fetch_all(
        engine, "SELECT recipient, chunk FROM outbox WHERE wave_id = :w AND kind = :k", w=wave_id, k=kind
    )
    return {r["recipient"]: r["chunk"] for r in rows}


@pytest.mark.parametrize(("contacts", "chunk_size"), [(5, 1), (12, 4), (13, 4), (1, 500)])
def test_every_recipient_once_in_chunks_of_the_wave_size(any_engine, tmp_path, contacts, chunk_size):
    wave = _wave_of(any_engine, tmp_path, contacts)
    chunks = mailings.enqueue_mailing(any_engine, wave.wave_id, "invitation", chunk_size)

    ledger = _ledger(any_engine, wave.wave_id, "invitation")
    assert sorted(ledger) == [f"C{n:04d}" for n in range(contacts)]
    assert chunks == list(range(-(-contacts // chunk_size)))
    sizes = [list(ledger.values()).count(chunk) for chunk in chunks]
    assert sizes[:-1] == [chunk_size] * (len(chunks) - 1) and 0 < sizes[-1] <= chunk_size
    assert mailings.count_recipients(any_engine, wave.wave_id, "invitation") == contacts

    assert mailings.enqueue_mailing(any_engine, wave.wave_id, "invitation", chunk_size) == chunks  # a re-run
    assert _ledger(any_engine, wave.wave_id, "invitation") == ledger


def test_the_reminder_goes_to_the_invited_who_have_not_answered_and_a_rerun_keeps_every_row(any_engine, tmp_path):
    wave = _wave_of(any_engine, tmp_path, 6)
    mailings.enqueue_mailing(any_engine, wave.wave_id, "invitation", 2)
    storage.execute(any_engine, "UPDATE outbox SET status = 'sent' WHERE recipient <> 'C0005'")  # C0005 bounced
    _answer(any_engine, wave.wave_id, "C0001")

    assert mailings.enqueue_mailing(any_engine, wave.wave_id, "reminder", 2) == [0, 1]
    assert sorted(_ledger(any_engine, wave.wave_id, "reminder")) == ["C0000", "C0002", "C0003", "C0004"]
    _answer(any_engine, wave.wave_id, "C0002")  # answered after the reminder
    mailings.enqueue_mailing(any_engine, wave.wave_id, "reminder", 2)
    assert mailings.count_recipients(any_engine, wave.wave_id, "reminder") == 4  # still every reminder row
    assert outbox.chunks(any_engine, wave.wave_id, "reminder") == [0, 1]
