import pytest

from common_data.paths import shared_dir


@pytest.fixture(scope="session")
def shared():
    """The local mirror of official files and fixtures (../shared); tests that need it skip without it."""
    path = shared_dir()
    if path is None:
        pytest.skip("../shared (local mirror of the official files) is not present")
    return path
