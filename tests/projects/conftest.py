import pytest


@pytest.fixture(scope="session", autouse=True)
def synthetic_root(tmp_path_factory):
    """Tiny configs generate the synthetic dataset on load: keep it out of the working tree."""
    root = tmp_path_factory.mktemp("datasets")
    patch = pytest.MonkeyPatch()
    patch.setenv("LITE_DETR_DATASETS", str(root))
    yield str(root)
    patch.undo()
