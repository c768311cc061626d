"""Write the Airflow login's passwords file from .env (run by the airflow-init service).

The stack logs in with SimpleAuthManager, Airflow's built-in auth manager. It keeps the password of
each user in `[core] simple_auth_manager_users` in a JSON file, `{"user": "password"}`, named by
`[core] simple_auth_manager_passwords_file`. A user already in the file keeps that password, and a
user missing from it gets a generated one, printed once in the api-server's log. This script
writes the admin's password from `AIRFLOW_ADMIN_PASSWORD` into that file, and the survey form's
service account's (`nps-survey`) from `NPS_SURVEY_AIRFLOW_PASSWORD` when it is set. The file is on a
volume that the api-server shares, so the login survives a recreated container and the operator
chooses the password. Entries of other users (added to the users list later) are kept.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SURVEY_ACCOUNT = "nps-survey"  # the survey form's service account (role op in the users list)


def write_passwords(path: Path, user: str, password: str) -> dict[str, str]:
    """Set `user`'s password in the JSON file at `path`, keeping the other entries; owner-only."""
    text = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    passwords: dict[str, str] = json.loads(text) if text else {}
    passwords[user] = password
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(json.dumps(passwords) + "\n")
    os.chmod(staged, 0o600)
    staged.replace(path)
    return passwords


def main() -> None:
    path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    user = os.environ.get("AIRFLOW_ADMIN_USER") or "admin"
    password = os.environ.get("AIRFLOW_ADMIN_PASSWORD", "")
    if not password:
        sys.exit("AIRFLOW_ADMIN_PASSWORD is empty: set it in .env")
    write_passwords(path, user, password)
    print(f"{path}: the password of {user!r} is AIRFLOW_ADMIN_PASSWORD from .env")
    if service_password := os.environ.get("NPS_SURVEY_AIRFLOW_PASSWORD", ""):
        write_passwords(path, SURVEY_ACCOUNT, service_password)
        print(f"{path}: the password of {SURVEY_ACCOUNT!r} is NPS_SURVEY_AIRFLOW_PASSWORD from .env")


if __name__ == "__main__":
    main()
