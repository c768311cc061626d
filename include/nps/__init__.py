"""The NPS program's domain package: plain Python, testable without a scheduler."""
