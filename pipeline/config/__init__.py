"""Configuration: job specs (``jobspec``) and provider and model profiles (``profiles``), validated once
at load; the rest of the package receives typed objects.
"""
