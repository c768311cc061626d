"""A simulated customer base for the demo and the tests.

`write_population` writes a contacts CSV (with a few bad rows, as real extracts have);
`Respondents` reads the mail spool and, like people would, clicks a score in their invitation
or reminder, fills in the form over HTTP, or unsubscribes. Behaviour is seeded per address,
so a run is reproducible.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import threading
import time
from pathlib import Path

import requests

from devkit.servers import read_eml

LOCALES = ["en", "en", "en", "ja", "zh", "he", "nb"]
TIERS = ["strategic", "enterprise", "mid-market", "smb", "smb"]
COMMENTS = {
    "critical": [
        "Outage last week cost us a full day.",
        "Nobody answers our tickets. <b>Nothing</b> works!",
        '=HYPERLINK("http://example.invalid","click")',
    ],
    "detractor": [
        "Too expensive for what we use.",
        "The new UI is confusing & slow.",
        "サポートの返答が遅いです。",
        "הממשק מסורבל",
    ],
    "passive": ["Good, but reporting needs work.", "Fine overall; the mobile app lags.", "Bra, men dyrt."],
    "promoter": ["Great support team!", "Saves us hours every week.", "とても使いやすいです。", "非常好用"],
}
SCORE_LINK = re.compile(r"^(\d+): (\S+/s/\S+\?score=\d+)\s*$", re.MULTILINE)
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_settings():
    """The survey form's default limits, but none per address: every simulated customer
    answers from 127.0.0.1, where real ones come from their own networks."""
    from include.nps.web.survey_form import FormSettings

    return FormSettings(requests_per_address=0)


def _rng(*key: str) -> random.Random:
    return random.Random(int(hashlib.sha256("|".join(key).encode()).hexdigest()[:16], 16))


def write_population(path: Path, accounts: int = 30, seed: str = "demo") -> Path:
    """A contacts file: `accounts` accounts with 1-8 contacts each, plus three bad rows."""
    rng = _rng(seed)
    rows = []
    for a in range(1, accounts + 1):
        account_id = f"A{a:03d}"
        tier = rng.choice(TIERS)
        for c in range(1, rng.randint(1, 8) + 1):
            local = "bounce" if rng.random() < 0.02 else f"contact{c}"
            rows.append(
                {
                    "contact_id": f"{account_id}-C{c:02d}",
                    "email": f"{local}.{c}@account{a:03d}.example",
                    "name": f"Contact {c} of Account {a}",
                    "locale": rng.choice(LOCALES),
                    "role": rng.choice(["admin", "user", "buyer", "executive"]),
                    "account_id": account_id,
                    "account_name": f"Account {a:03d} Ltd",
                    "account_tier": tier,
                    "account_country": "US",
                    "sales_owner": f"seller{a % 4 + 1}@vendor.example",
                    "csm": f"csm{a % 3 + 1}@vendor.example",
                    "vip": "true" if tier == "strategic" else "false",
                }
            )
    bad = [
        {**rows[0], "contact_id": "BAD-1", "email": "not-an-email"},
        {**rows[1], "contact_id": rows[1]["contact_id"], "email": "dup@elsewhere.example"},
        {**rows[2], "contact_id": "BAD-3", "email": "noaccount@nowhere.example", "account_id": ""},
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows + bad)
    return path


def persona_score(email: str, seed: str) -> int:
    """Accounts lean happy or unhappy together; people vary around their account."""
    domain = email.split("@")[1]
    mood = _rng(seed, domain).choice([2, 5, 7, 8, 9, 9])
    return max(0, min(10, mood + _rng(seed, email, "score").randint(-2, 2)))


class Respondents(threading.Thread):
    """Reads new messages in the spool and answers as the simulated customers would."""

    def __init__(
        self,
        spool: Path,
        seed: str = "demo",
        answer_rate: float = 0.5,
        reminder_rate: float = 0.3,
        unsubscribe_rate: float = 0.03,
        silent_share: float = 0.15,
    ) -> None:
        super().__init__(daemon=True)
        self.spool, self.seed = spool, seed
        self.rates = {"invitation": answer_rate, "reminder": reminder_rate}
        self.unsubscribe_rate, self.silent_share = unsubscribe_rate, silent_share
        self.unsubscribers: set[str] = set()  # addresses that unsubscribe from their first email
        self.seen: set[Path] = set()
        self.answered: dict[str, int] = {}
        self.unsubscribed: set[str] = set()
        self.clicks_without_submit = 0
        self._halt = threading.Event()
        self.errors: list[str] = []

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        while not self._halt.is_set():
            self.poll()
            time.sleep(0.2)

    def poll(self) -> None:
        for path in sorted(self.spool.glob("*.eml")):
            if path in self.seen:
                continue
            self.seen.add(path)
            try:
                self.react(path)
            except (requests.RequestException, KeyError, AttributeError) as exc:
                self.errors.append(f"{path.name}: {exc}")

    def react(self, path: Path) -> None:
        message = read_eml(path)
        kind, email = message["X-NPS-Kind"], message["To"]
        rng = _rng(self.seed, email, kind or "")
        wants_out = email in self.unsubscribers or rng.random() < self.unsubscribe_rate
        if kind == "preannouncement" and wants_out and email not in self.unsubscribed:
            url = message["List-Unsubscribe"].strip("<>")
            requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10).raise_for_status()
            self.unsubscribed.add(email)
            return
        if kind not in self.rates or email in self.answered:
            return
        if _rng(self.seed, email.split("@")[1], "silent").random() < self.silent_share:
            return
        if rng.random() >= self.rates[kind]:
            return
        self.answer(message, email, rng)

    def answer(self, message, email: str, rng: random.Random) -> None:
        text = message.get_body(preferencelist=("plain",)).get_content()
        links = dict(SCORE_LINK.findall(text))
        score = persona_score(email, self.seed)
        form_page = requests.get(links[str(score)], timeout=10)
        form_page.raise_for_status()
        if rng.random() < 0.1:
            self.clicks_without_submit += 1  # clicked a score, never pressed "send"
            return
        band = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor" if score >= 2 else "critical"
        form = {"score": str(score), "csrf_token": CSRF_FIELD.search(form_page.text).group(1)}
        if rng.random() < 0.7:
            form["comment"] = rng.choice(COMMENTS[band])
        for pillar, high in re.findall(r'name="pillar_(\w+)" value="(\d+)"', form_page.text):
            form[f"pillar_{pillar}"] = str(
                max(1 if high != "0" else 0, min(int(high), round(int(high) * score / 10 + rng.choice([-1, 0, 1]))))
            )
        url = links[str(score)].split("?")[0]
        requests.post(url, data=form, timeout=10).raise_for_status()
        self.answered[email] = score


def seed_history(engine, contacts_csv: Path, program: str, close_at, seed: str = "history") -> str:
    """Record an earlier, finished wave of `program` (as if imported) so comparisons have a base."""
    import datetime as dt

    from include.nps.core import storage
    from include.nps.delivery import outbox
    from include.nps.wave import audience, waves
    from include.nps.wave.pillars import DEFAULT_PILLARS

    params = {
        "wave_name": "previous wave",
        "program": program,
        "product": "Acme Cloud",
        "country": "US",
        "audience_csv": str(contacts_csv),
        "open_at": (close_at - dt.timedelta(days=14)).isoformat(),
        "close_at": close_at.isoformat(),
        "sender": "cs@acme.example",
        "executive_sender": "ceo@acme.example",
        "pillar_questions": DEFAULT_PILLARS,
    }
    wave = waves.WaveParams.from_params(params)
    waves.plan_wave(engine, wave)
    loaded = audience.load_contacts(engine, wave.wave_id, contacts_csv)
    audience.snapshot_audience(engine, wave.wave_id, loaded.contact_ids, 0, wave.open_at)
    good = audience.audience_frame(engine, wave.wave_id)
    outbox.enqueue(engine, wave.wave_id, "invitation", zip(good["contact_id"], good["email"], strict=True))
    storage.execute(
        engine,
        "UPDATE outbox SET status = 'sent', sent_at = :t WHERE wave_id = :w",
        {"t": wave.open_at, "w": wave.wave_id},
    )
    rows = []
    for contact_id, email in zip(good["contact_id"], good["email"], strict=True):
        rng = _rng(seed, email)
        if rng.random() < 0.4:
            score = max(0, min(10, persona_score(email, seed) + 1))
            pillars = {"support": rng.randint(2, 5), "ease_of_use": rng.randint(2, 5), "value": rng.randint(4, 10)}
            rows.append(
                {
                    "wave_id": wave.wave_id,
                    "contact_id": contact_id,
                    "score": score,
                    "comment": None,
                    "pillar_answers": storage.dumps(pillars),
                    "now": wave.open_at + dt.timedelta(days=2),
                }
            )
    waves.set_status(engine, wave.wave_id, "open")
    storage.execute(engine, storage.query("upsert_response"), rows)
    waves.set_status(engine, wave.wave_id, "done")
    return wave.wave_id
