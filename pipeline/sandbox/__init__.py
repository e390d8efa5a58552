"""A Runware-compatible sandbox server: the embedded default provider and the test bed.

from pipeline.sandbox import SandboxSettings, running_sandbox, SandboxThread
async with running_sandbox(SandboxSettings(faults={"hang": 0.05})) as sb:
    ...   # POST Runware tasks to sb.url; GET sb.base_url + "/sandbox/billing"
"""

import typing as _typing

from pipeline._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pipeline.sandbox.server import SandboxHandle, SandboxThread, running_sandbox
    from pipeline.sandbox.settings import FAULT_KINDS, SandboxSettings

# The server (uvicorn, Pillow) is imported only when used: `pipeline --help` needs just the settings.
__getattr__ = _lazy_exports(
    __name__,
    {
        "pipeline.sandbox.server": ("SandboxHandle", "SandboxThread", "running_sandbox"),
        "pipeline.sandbox.settings": ("FAULT_KINDS", "SandboxSettings"),
    },
)

__all__ = ["FAULT_KINDS", "SandboxHandle", "SandboxSettings", "SandboxThread", "running_sandbox"]
