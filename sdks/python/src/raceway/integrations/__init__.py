"""Framework and HTTP-client integrations (each needs its optional extra)."""
