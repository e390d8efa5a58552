"""A Runware-compatible sandbox server: the embedded default provider and the test bed.

from pipeline.sandbox import SandboxSettings, running_sandbox, SandboxThread
async with running_sandbox(SandboxSettings(faults={"hang": 0.05})) as sb:
    ...   # POST Runware tasks to sb.url; GET sb.base_url + "/sandbox/billing"
"""

from pipeline.sandbox.server import SandboxHandle, SandboxThread, running_sandbox
from pipeline.sandbox.settings import FAULT_KINDS, SandboxSettings

__all__ = ["FAULT_KINDS", "SandboxHandle", "SandboxSettings", "SandboxThread", "running_sandbox"]
