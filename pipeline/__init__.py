"""image-pipeline."""
