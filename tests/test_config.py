from pathlib import Path

import pytest

from metis.config import Settings, get_settings
from metis.errors import ConfigError


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("METIS_DATABASE_URL", raising=False)
    monkeypatch.setenv("METIS_HOME", str(tmp_path))
    s = get_settings()
    assert s.home == tmp_path
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'metis.db'}"


@pytest.mark.parametrize(
    ("var", "value"),
    [("METIS_LOG_LEVEL", "loud"), ("METIS_DATABASE_URL", "mysql://x"), ("METIS_LOG_FORMAT", "xml")],
)
def test_malformed_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as exc:
        get_settings()
    assert var in str(exc.value)
    assert "\n" not in str(exc.value)


def test_upstream_ca_bundle_is_one_setting_for_the_gateway_and_sync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metis.ingest.settings import IngestSettings

    monkeypatch.setenv("METIS_UPSTREAM_CA_BUNDLE", "")
    assert Settings().upstream_ca_bundle is None and IngestSettings().upstream_ca_bundle is None
    monkeypatch.setenv("METIS_UPSTREAM_CA_BUNDLE", "/etc/corp/ca.pem")
    assert Settings().upstream_ca_bundle == IngestSettings().upstream_ca_bundle
    assert Settings().upstream_ca_bundle == Path("/etc/corp/ca.pem")
