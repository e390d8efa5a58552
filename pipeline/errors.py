"""The one exception tree of the pipeline.

Every error the pipeline raises on purpose derives from ``PipelineError`` and carries the exit code the
CLI maps it to. Foreign exceptions (httpx, polars, pyarrow, pydantic) are translated at the boundary with
``raise ... from``. Retry decisions are made by type, through the mixins::

    PipelineError                      exit 1 unless a subclass says otherwise
    ├── UsageError                     exit 2: bad command line, job spec, profile or manifest file
    │   ├── ConfigError                    a job spec or profile is wrong (file, key, reason)
    │   └── ManifestError                  a manifest or reference-sets file cannot be read
    ├── LockHeldError                  exit 4: another run of the job holds the lock
    ├── StoreError                     the job's state database cannot be read or written
    │   └── SchemaError                    written by a newer version, or an upgrade is missing
    ├── LimitReachedError              exit 3: budget or max runtime stopped dispatching
    └── ProviderError                  an answer (or lack of one) from the image provider
        ├── TransientProviderError  (TransientError)   429, 5xx, timeouts, dropped connections
        │   └── ModelUnavailableError                  modelUnavailable: the model, for now (or for good
        │                                              when it persists: then it is treated as refused)
        ├── PermanentProviderError  (PermanentError)   invalid parameter, content refused
        │   └── ModelRefusedError                      the model itself is unusable (retired, unknown,
        │                                              disabled): stop sending it, its rows stay pending
        └── FatalProviderError      (FatalError)       bad key, no credits, forbidden: exit 5

    TransientError / PermanentError / FatalError    mixins that decide retries
"""

from __future__ import annotations

from dataclasses import dataclass, field


class TransientError(Exception):
    """Mixin: the same work may succeed if tried again later."""


class PermanentError(Exception):
    """Mixin: trying again will fail the same way; fail the row."""


class FatalError(Exception):
    """Mixin: nothing else will succeed either; stop the run."""


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    exit_code: int = 1


class UsageError(PipelineError):
    """Bad command line, job spec, profile or manifest: nothing was sent."""

    exit_code = 2


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

    exit_code = 4


class StoreError(PipelineError):
    """The job's state database cannot be read or written (the message names the file and the reason)."""


class SchemaError(StoreError):
    """The state database cannot be used by this version (too new, or an upgrade is missing)."""


class LedgerError(PipelineError):
    """A 0.1 ``ledger.jsonl`` cannot be read for its import (the message names the file and line)."""


class SpliceError(PipelineError, ValueError):
    """A Parquet file's footer cannot be read, or its row groups cannot be copied into another file."""


class LimitReachedError(PipelineError):
    """A budget or runtime limit stopped dispatching with work left."""

    exit_code = 3


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

    exit_code = 5


class ModelRefusedError(PermanentProviderError):
    """The provider refuses the model itself (``invalidModel``, ``modelNotFound``, ``modelDisabled``, a
    400 or 404 naming the ``model`` parameter): no row of that model can succeed in this run."""


class ModelUnavailableError(TransientProviderError):
    """``modelUnavailable``: the model cannot serve now; when it persists the run treats it as refused."""
