"""Shared fixtures."""
import pytest


@pytest.fixture(scope="session")
def kit(tmp_path_factory):
    """The synthetic kit (body models, deformation transfer, AMASS, annotations), written
    once per test session (a few seconds)."""
    from synthetic_kit import write_synthetic_kit
    return write_synthetic_kit(tmp_path_factory.mktemp("kit"), seed=0)
