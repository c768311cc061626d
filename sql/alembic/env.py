"""The NPS DB's alembic environment, run by `alembic -c sql/alembic.ini ...` and by
`python -m include.nps.core.migrations ...`. Tasks migrate through storage.migrate(), which skips
this file but shares its lock and settings (include/nps/core/migrations.py)."""

import sys
from logging.config import fileConfig
from pathlib import Path
from typing import cast

from alembic import context
from alembic.runtime.environment import EnvironmentContext

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
if PROJECT_ROOT not in sys.path:  # the plain `alembic` command run from anywhere
    sys.path.insert(0, PROJECT_ROOT)

from include.nps.core import connections, migrations, storage  # noqa: E402

env = cast(EnvironmentContext, context)  # the module stands for the running EnvironmentContext
config = env.config
if config.config_file_name:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = env.get_x_argument(as_dictionary=True).get("url") or connections.db_url()
if env.is_offline_mode():
    migrations.run_offline(env, url)
else:
    engine = storage.make_engine(url)
    try:
        migrations.run_online(env, engine)
    finally:
        engine.dispose()
