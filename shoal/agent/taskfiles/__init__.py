"""Tasks' secrets and configs on their node: planned (``plan``), written to
a tmpfs per task (``tmpfs``) and wired around any runtime (``runtime``).

The agent daemon wraps its runtime once (``WithFiles``) and its status
reports (``watch_reports``); the worker and the backends need nothing else.
"""

from shoal.agent.taskfiles.plan import CONFIGS_ENV, SECRETS_ENV, FilePlan, plan_files
from shoal.agent.taskfiles.runtime import WithFiles, watch_reports
from shoal.agent.taskfiles.tmpfs import FileStore

__all__ = [
    "CONFIGS_ENV",
    "SECRETS_ENV",
    "FilePlan",
    "FileStore",
    "WithFiles",
    "plan_files",
    "watch_reports",
]
