"""Test helpers imported by several test modules (fixtures built on them: tests/conftest.py)."""
