"""Alembic's env.py for every service history (loaded by Alembic, not imported).

The history and the connection come in ``config.attributes``; see
:mod:`linewatch.runtime.migrations`.
"""

from alembic import context

from linewatch.runtime.migrations import run_env

run_env(context.config)
