"""PromQL built from typed parameters, stats services and streaming consumers (metrics issue)."""
