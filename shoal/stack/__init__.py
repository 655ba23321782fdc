"""Compose files as shoal stacks: files in, checked ServiceSpecs out.

``load_stack(files, stack, environ)`` (``loader``) is the entry point; the
steps are one module each: ``yamlsafe`` (bounded YAML), ``located`` (file
and line of every key), ``dotenv``, ``interpolate``, ``normalize``,
``merge``, ``objects`` (secrets and configs), ``convert`` with ``deploy``,
``ports``, ``mounts`` and ``values``. Pure: no manager, no network; the
CLI (``shoal stack deploy``) sends the result.
"""

from shoal.stack.loader import Stack, load_stack
from shoal.stack.located import StackError
from shoal.stack.objects import NAMESPACE_LABEL, StackObject

__all__ = ["NAMESPACE_LABEL", "Stack", "StackError", "StackObject", "load_stack"]
