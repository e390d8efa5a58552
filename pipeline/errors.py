"""The one exception tree of the pipeline, and its exit codes.

Every error the pipeline raises on purpose derives from ``PipelineError`` and carries the exit code the
CLI maps it to (``ExitCode``: the only place the numbers are written). Foreign exceptions (httpx,
polars, pyarrow, pydantic) are translated at the boundary with ``raise ... from``; the client's
transport failures in ``runware.client.transport_error`` (``tests`` check every httpx exception is
classified). Retry decisions are made by type, through the mixins::

    PipelineError                      exit 1 unless a subclass says otherwise
    ├── UsageError                     exit 2: bad command line, job spec, profile or manifest file
    │   ├── ConfigError                    a job spec or profile is wrong (file, key, reason)
    │   └── ManifestError                  a manifest or reference-sets file cannot be read
    ├── ReferenceProblem  (ValueError) a row's reference image makes it a reject (the reason)
    ├── LockHeldError                  exit 4: another run of the job holds the lock
    ├── StoreError                     the job's state database cannot be read or written
    │   └── SchemaError                    written by a newer version, or an upgrade is missing
    ├── LedgerError                    a 0.1 ledger cannot be imported (file, line)
    ├── SpliceError       (ValueError) a Parquet file's row groups cannot be copied
    ├── DownloadError                  an image could not be downloaded (URL, reason)
    │   ├── TransientDownloadError  (TransientError)   network, timeout, 5xx, 408, 429
    │   └── PermanentDownloadError  (PermanentError)   404 and other 4xx, a bad URL
    │       └── DownloadTooLargeError                  larger than the job allows
    ├── StillInDoubtError              no verdict on a task in time: it stays in doubt
    └── ProviderError                  an answer (or lack of one) from the image provider
        ├── TransientProviderError  (TransientError)   429, 5xx, timeouts, dropped connections
        │   ├── InDoubtError                           no readable answer: the task may be running
        │   └── ModelUnavailableError                  modelUnavailable: the model, for now (or for good
        │                                              when it persists: then it is treated as refused)
        ├── PermanentProviderError  (PermanentError)   invalid parameter, content refused
        │   ├── TaskConflictError                      the taskUUID was submitted before: poll it
        │   ├── TaskUnknownError                       the provider has no task with this taskUUID
        │   └── ModelRefusedError                      the model itself is unusable (retired, unknown,
        │                                              disabled): stop sending it, its rows stay pending
        └── FatalProviderError      (FatalError)       bad key, no credits, forbidden: exit 5

    TransientError / PermanentError / FatalError    mixins that decide retries

A run that ends without an error exits by what it did (``pipeline.run.outcome.Outcome.exit_code``):
0 all done, 1 rows failed or left, 3 a limit (budget, runtime) stopped it, 5 the provider refused the
key or a model, 130 interrupted. The engine's private control-flow signals (``_Stopped``...) never
leave it and are not errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class ExitCode(IntEnum):
    """What the ``pipeline`` command exits with."""

    OK = 0
    FAILED = 1  # rows failed, were rejected or are left; or an error without a code of its own
    USAGE = 2  # bad command line, job spec, profile or manifest: nothing was sent
    LIMIT = 3  # the budget or max runtime stopped dispatching with work left
    LOCKED = 4  # another run of the job holds its lock
    PROVIDER = 5  # the provider refused the key, the account or a model
    INTERRUPTED = 130  # Ctrl-C or SIGTERM


class TransientError(Exception):
    """Mixin: the same work may succeed if tried again later."""


class PermanentError(Exception):
    """Mixin: trying again will fail the same way; fail the row."""


class FatalError(Exception):
    """Mixin: nothing else will succeed either; stop the run."""


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    exit_code: int = ExitCode.FAILED


class UsageError(PipelineError):
    """Bad command line, job spec, profile or manifest: nothing was sent."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A job spec or profile is invalid. The message names the file, the key and the reason."""

    def __init__(self, path: object, key: str | None, reason: str) -> None:
        self.path = str(path)
        self.key = key
        self.reason = reason
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {reason}")


class ManifestError(UsageError):
    """A manifest or reference-sets file cannot be used as a whole."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LockHeldError(PipelineError):
    """Another run of the same job is in progress."""

    exit_code = ExitCode.LOCKED


class StoreError(PipelineError):
    """The job's state database cannot be read or written (the message names the file and the reason)."""


class SchemaError(StoreError):
    """The state database cannot be used by this version (too new, or an upgrade is missing)."""


class LedgerError(PipelineError):
    """A 0.1 ``ledger.jsonl`` cannot be read for its import (the message names the file and line)."""


class SpliceError(PipelineError, ValueError):
    """A Parquet file's footer cannot be read, or its row groups cannot be copied into another file."""


class ReferenceProblem(PipelineError, ValueError):
    """A reference that makes its row a reject; the message is the reject reason."""


class DownloadError(PipelineError):
    """An image could not be downloaded (the message names the URL, never any credential)."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = url
        self.reason = reason
        self.status = status
        super().__init__(f"download of {url} failed: {reason}")


class TransientDownloadError(DownloadError, TransientError):
    """Network error, timeout, 5xx, 408 or 429: a later try may work."""


class PermanentDownloadError(DownloadError, PermanentError):
    """404 and other 4xx, a bad URL: trying again will not help."""


class DownloadTooLargeError(PermanentDownloadError):
    """The image is larger than ``max_bytes``; nothing was kept."""


class StillInDoubtError(PipelineError):
    """No verdict on the task in time; it stays in doubt (reconciled by a later run)."""


@dataclass(eq=False)
class ProviderError(PipelineError):
    """An error answer from the provider, or no usable answer at all."""

    message: str
    code: str = "unknown"
    status: int | None = None
    task_uuid: str | None = None
    parameter: str | None = None
    retry_after: float | None = None
    details: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        status = f"HTTP {self.status} " if self.status is not None else ""
        return f"{status}{self.code}: {self.message}"


class TransientProviderError(ProviderError, TransientError):
    """429, 5xx, timeouts, dropped connections, unreadable answers."""


class PermanentProviderError(ProviderError, PermanentError):
    """The request itself was refused: invalid parameter, content policy."""


class FatalProviderError(ProviderError, FatalError):
    """The account cannot proceed: invalid key, no credits, forbidden."""

    exit_code = ExitCode.PROVIDER


class ModelRefusedError(PermanentProviderError):
    """The provider refuses the model itself (``invalidModel``, ``modelNotFound``, ``modelDisabled``, a
    400 or 404 naming the ``model`` parameter): no row of that model can succeed in this run."""


class ModelUnavailableError(TransientProviderError):
    """``modelUnavailable``: the model cannot serve now; when it persists the run treats it as refused."""


class InDoubtError(TransientProviderError):
    """No readable answer: the task may or may not be running. Reconcile before a new attempt."""


class TaskConflictError(PermanentProviderError):
    """``conflictTaskUUID``: this taskUUID was already submitted; poll it instead."""


class TaskUnknownError(PermanentProviderError):
    """The provider has no task with this taskUUID."""
