"""One run of a job: the runner (``runner``) drives the engine (``engine``) under its limits (``limits``,
``budget``, ``retry``), settles what is in doubt (``reconcile``), uploads references (``uploads``), fetches
images (``downloads``, ``fetcher``), records through one writer (``recorder``) and reports progress and the
outcome (``progress``, ``outcome``, ``verdicts``, ``earlier_models``).
"""
