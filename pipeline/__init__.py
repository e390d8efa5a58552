"""image-pipeline: bulk image generation through Runware, resumable and accountable to the cent.

    from pipeline import load_job_spec, read_manifest
    spec = load_job_spec("jobs/demo.toml")
    for batch in read_manifest(spec):
        ...

The sandbox server has its own namespace: ``pipeline.sandbox``.
"""

from pipeline.errors import (
    ConfigError,
    FatalError,
    FatalProviderError,
    LimitReachedError,
    LockHeldError,
    ManifestError,
    ModelRefusedError,
    ModelUnavailableError,
    PermanentError,
    PermanentProviderError,
    PipelineError,
    ProviderError,
    SchemaError,
    StoreError,
    TransientError,
    TransientProviderError,
    UsageError,
)
from pipeline.fingerprint import fingerprint
from pipeline.jobspec import JobSpec, load_job_spec
from pipeline.ledger import LedgerWriter, load_state, read_row_states
from pipeline.manifest import ManifestBatch, Reject, read_manifest
from pipeline.profiles import ModelProfile, ProviderProfile, load_model_profile, load_provider_profile
from pipeline.results import rebuild_results, write_results
from pipeline.rows import ImageRequest, Row

__all__ = [
    "ConfigError",
    "FatalError",
    "FatalProviderError",
    "ImageRequest",
    "JobSpec",
    "LedgerWriter",
    "LimitReachedError",
    "LockHeldError",
    "ManifestBatch",
    "ManifestError",
    "ModelProfile",
    "ModelRefusedError",
    "ModelUnavailableError",
    "PermanentError",
    "PermanentProviderError",
    "PipelineError",
    "ProviderError",
    "ProviderProfile",
    "Reject",
    "Row",
    "SchemaError",
    "StoreError",
    "TransientError",
    "TransientProviderError",
    "UsageError",
    "fingerprint",
    "load_job_spec",
    "load_model_profile",
    "load_provider_profile",
    "load_state",
    "read_manifest",
    "read_row_states",
    "rebuild_results",
    "write_results",
]
