import pytest


@pytest.fixture(autouse=True)
def _infra(infra: dict[str, str]) -> dict[str, str]:
    return infra
