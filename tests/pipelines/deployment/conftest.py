"""Fixtures of the deployment tests (MLflow state is reset by tests/conftest.py)."""
