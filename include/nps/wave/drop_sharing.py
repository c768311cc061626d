"""Sharing a raw-data drop with sales: which files go to whom, where they are stored, the email
that carries or links them, and the decisions sales returned on earlier drops.

`share` is the whole step: the complete file for sales ops and one per salesperson, each checked,
written with a manifest locally and to the drop location, and emailed (each recipient once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from include.nps.core import storage
from include.nps.core.connections import reports_dir
from include.nps.core.emails import Attachment
from include.nps.delivery import outbox
from include.nps.delivery.transports import SmtpTransport
from include.nps.wave import data_checks, mailings, responses, sales_decisions, sales_drops, stats, waves


def share(engine: Engine, wave: waves.WaveParams, phase: str) -> dict[str, Any]:
    """The raw-data drop: a complete file for sales ops and one per salesperson, with a manifest,
    written locally and to the drop location, and emailed (each recipient once)."""
    wave_id = wave.wave_id
    cutoff = waves.milestone_due(engine, wave_id, "midwave") if phase == "midwave" else wave.close_at
    answers = responses.responses_frame(engine, wave_id, [p["id"] for p in wave.pillar_questions], as_of=cutoff)
    decided = returned_decisions(engine, wave, answers) if phase == "postwave" else {}
    sheet = sales_drops.drop_frame(answers, wave.detractor_max, wave.pillar_questions, cutoff, decided)
    answered = responses.count_answered(engine, wave_id, cutoff)
    suite = data_checks.drop_suite(answered, list(sheet.columns))
    data_checks.run_check(engine, wave_id, f"drop_{phase}", "raw_data_drop", sheet, suite, row_key="Contact ID")
    silent = None
    if phase == "postwave":
        accounts = stats.per_account(engine, wave_id)
        silent = accounts[accounts["responses"] == 0]
    parts = sales_drops.drop_parts(sheet, silent)
    _check_seller_files(engine, wave_id, phase, parts)
    files = sales_drops.build_drop(wave_id, phase, parts, cutoff, wave.drop_formats)
    parcels = _drop_parcels(wave, files) if "email" in wave.drop_channels else {}
    sales_drops.check_recipients({address: parcel["why"] for address, parcel in parcels.items()}, wave.drop_allowed)
    links = _store_drop(wave, phase, cutoff, files)
    outcome = outbox.Outcome()
    if parcels:
        personal = _drop_mail(wave, parcels, links, silent)
        context = {"phase": phase}
        with SmtpTransport() as transport:
            outcome = mailings.send_internal(
                engine,
                wave,
                f"drop_{phase}",
                sorted(parcels),
                context,
                transport,
                template="sales_drop",
                personal=personal,
            )
    if phase == "midwave":
        waves.mark_done(engine, wave_id, "midwave")
    return {"files": len(files), "rows": len(sheet), "location": links.get("folder"), **outcome.__dict__}


def _check_seller_files(engine: Engine, wave_id: str, phase: str, parts: sales_drops.Parts) -> None:
    """Each salesperson's file holds only the accounts they own, by the accounts table."""
    owners = storage.fetch_all(engine, storage.query("response_account_owners"), wave_id=wave_id)
    rows = sales_drops.seller_rows(parts)
    of_record = {o["contact_id"]: o["sales_owner"] for o in owners}
    rows["owner_of_record"] = rows["Contact ID"].map(lambda cell: of_record.get(sales_drops.unneutralise(cell)))
    suite = data_checks.seller_files_suite("owner_of_record")
    data_checks.run_check(engine, wave_id, f"drop_{phase}_files", "salesperson_files", rows, suite, "Contact ID")


def _drop_parcels(wave: waves.WaveParams, files: list[sales_drops.DropFile]) -> dict[str, dict[str, Any]]:
    """Who gets which files: sales ops the complete ones, each salesperson their own."""
    parcels: dict[str, dict[str, Any]] = {}
    for address in wave.sales_recipients:
        parcels[address] = {"why": "sales recipient", "files": [f for f in files if f.audience == sales_drops.COMPLETE]}
    for f in files:
        if f.audience != sales_drops.COMPLETE:
            parcel = parcels.setdefault(f.audience, {"why": "salesperson of the accounts", "files": []})
            parcel["files"].append(f)
    return parcels


def _store_drop(wave: waves.WaveParams, phase: str, cutoff: Any, files: list[sales_drops.DropFile]) -> dict[str, str]:
    """Write the files and their manifest to the local reports folder and, when configured, to the
    drop location (`ObjectStoragePath`); return the stored location of each file."""
    manifest = sales_drops.manifest(wave.wave_id, phase, cutoff, files)
    local = reports_dir(wave.wave_id) / phase
    local.mkdir(parents=True, exist_ok=True)
    for f in files:
        (local / f.name).write_bytes(f.content)
    (local / "manifest.json").write_bytes(manifest)
    links = {"folder": str(local)}
    if "storage" in wave.drop_channels:
        folder = _drop_root(wave) / phase
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            (folder / f.name).write_bytes(f.content)
            links[f.name] = str(folder / f.name)
        (folder / "manifest.json").write_bytes(manifest)
        links["folder"] = str(folder)
    return links


def _drop_root(wave: waves.WaveParams) -> Any:
    """The wave's folder in the drop location (`ObjectStoragePath`: a local folder, S3 or GCS)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(wave.drop_location, conn_id=wave.drop_storage_conn_id or None) / wave.wave_id


def _drop_mail(
    wave: waves.WaveParams, parcels: dict[str, dict[str, Any]], links: dict[str, str], silent: Any
) -> Callable[[str], tuple[dict[str, Any], list[Attachment]]]:
    """Each recipient's files: attached, or linked when above the mail size limit. Checked for
    every recipient before anything is sent."""
    limit = int(wave.mail_size_limit_mb * 1024 * 1024)
    for address, parcel in parcels.items():
        size = sum(len(f.content) for f in parcel["files"])
        parcel["attach"] = size <= limit
        if not parcel["attach"] and not all(f.name in links for f in parcel["files"]):
            raise sales_drops.DropRefused(
                f"raw-data drop stopped: the files for {address} weigh {size / 1048576:.1f} MB, above the "
                f"{wave.mail_size_limit_mb:g} MB mail limit, and no drop location is configured to link to. "
                "Nothing was sent."
            )

    def personal(address: str) -> tuple[dict[str, Any], list[Attachment]]:
        parcel = parcels[address]
        scope = "all" if parcel["why"] == "sales recipient" else "own"
        own_silent = silent if silent is None or scope == "all" else silent[silent["sales_owner"] == address]
        listed = [
            {"name": f.name, "rows": f.rows, "link": None if parcel["attach"] else links[f.name]}
            for f in parcel["files"]
        ]
        context = {
            "scope": scope,
            "files": listed,
            "responses": max((f.rows for f in parcel["files"]), default=0),
            "silent_accounts": [] if own_silent is None else own_silent["account_name"].tolist(),
        }
        attached = [Attachment(f.name, f.content) for f in parcel["files"]] if parcel["attach"] else []
        return context, attached

    return personal


def returned_decisions(engine: Engine, wave: waves.WaveParams, answers: Any) -> dict[str, str]:
    """The decisions sales returned so far, read from the wave's `returned/` folders."""
    return sales_decisions.collect(engine, wave.wave_id, _returned_files(wave), set(answers["contact_id"]))


def _returned_files(wave: waves.WaveParams) -> list[sales_decisions.ReturnedFile]:
    """Drop files sales sent back: in the drop location's `<wave>/returned/` (when drops are
    stored) and in the wave's local reports folder `returned/` (CS ops save emailed ones there)."""
    found = {
        path.name: sales_decisions.ReturnedFile(path.name, path.read_bytes())
        for path in (reports_dir(wave.wave_id) / "returned").glob("*")
        if path.suffix.lower() in sales_decisions.SUFFIXES
    }
    if "storage" in wave.drop_channels:
        folder = _drop_root(wave) / "returned"
        if folder.exists():
            for path in folder.iterdir():
                if path.suffix.lower() in sales_decisions.SUFFIXES:
                    found[path.name] = sales_decisions.ReturnedFile(path.name, path.read_bytes())
    return list(found.values())
