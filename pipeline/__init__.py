"""image-pipeline: bulk image generation through Runware, resumable and accountable to the cent.

    from pipeline import load_job_spec, read_manifest
    spec = load_job_spec("jobs/demo.toml")
    for batch in read_manifest(spec):
        ...

The sandbox server has its own namespace: ``pipeline.sandbox``. Names are imported on first use, so
``import pipeline`` (and ``pipeline --help``) pulls in neither polars nor the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline._lazy import lazy_exports
from pipeline.errors import (
    ConfigError,
    DownloadError,
    DownloadTooLargeError,
    ExitCode,
    FatalError,
    FatalProviderError,
    InDoubtError,
    LedgerError,
    LockHeldError,
    ManifestError,
    ModelRefusedError,
    ModelUnavailableError,
    PermanentDownloadError,
    PermanentError,
    PermanentProviderError,
    PipelineError,
    ProviderError,
    ReferenceProblem,
    SchemaError,
    SpliceError,
    StillInDoubtError,
    StoreError,
    TaskConflictError,
    TaskUnknownError,
    TransientDownloadError,
    TransientError,
    TransientProviderError,
    UsageError,
)

if TYPE_CHECKING:
    from pipeline.config.jobspec import JobSpec, load_job_spec
    from pipeline.config.profiles import (
        ModelProfile,
        ProviderProfile,
        load_model_profile,
        load_provider_profile,
    )
    from pipeline.manifest.fingerprint import fingerprint
    from pipeline.manifest.reader import ManifestBatch, Reject, read_manifest
    from pipeline.output.results.write import rebuild_results, write_results
    from pipeline.rows import ImageRequest, Row

__getattr__ = lazy_exports(
    __name__,
    {
        "pipeline.manifest.fingerprint": ("fingerprint",),
        "pipeline.config.jobspec": ("JobSpec", "load_job_spec"),
        "pipeline.manifest.reader": ("ManifestBatch", "Reject", "read_manifest"),
        "pipeline.config.profiles": (
            "ModelProfile",
            "ProviderProfile",
            "load_model_profile",
            "load_provider_profile",
        ),
        "pipeline.output.results.write": ("rebuild_results", "write_results"),
        "pipeline.rows": ("ImageRequest", "Row"),
    },
)

__all__ = [
    "ConfigError",
    "DownloadError",
    "DownloadTooLargeError",
    "ExitCode",
    "FatalError",
    "FatalProviderError",
    "ImageRequest",
    "InDoubtError",
    "JobSpec",
    "LedgerError",
    "LockHeldError",
    "ManifestBatch",
    "ManifestError",
    "ModelProfile",
    "ModelRefusedError",
    "ModelUnavailableError",
    "PermanentDownloadError",
    "PermanentError",
    "PermanentProviderError",
    "PipelineError",
    "ProviderError",
    "ProviderProfile",
    "ReferenceProblem",
    "Reject",
    "Row",
    "SchemaError",
    "SpliceError",
    "StillInDoubtError",
    "StoreError",
    "TaskConflictError",
    "TaskUnknownError",
    "TransientDownloadError",
    "TransientError",
    "TransientProviderError",
    "UsageError",
    "fingerprint",
    "load_job_spec",
    "load_model_profile",
    "load_provider_profile",
    "read_manifest",
    "rebuild_results",
    "write_results",
]
