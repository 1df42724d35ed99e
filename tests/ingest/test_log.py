import io
import json

from metis.ingest.log import forget_secret, get_logger, register_secret


def test_json_lines_with_secrets_redacted() -> None:
    buf = io.StringIO()
    log = get_logger(buf)
    register_secret("sk-admin-verysecret123")
    try:
        log.info(
            "ingest.thing",
            api_key="sk-other",
            authorization="Bearer x",
            provider_api_key_id="key_abc",
            detail="provider said: bad key sk-admin-verysecret123",
            nested={"msg": ["sk-admin-verysecret123"]},
        )
    finally:
        forget_secret("sk-admin-verysecret123")
    line = json.loads(buf.getvalue())
    assert line["event"] == "ingest.thing" and line["level"] == "info" and "timestamp" in line
    assert line["api_key"] == "[redacted]" and line["authorization"] == "[redacted]"
    assert line["provider_api_key_id"] == "key_abc"  # ids are not secrets
    assert "verysecret" not in buf.getvalue()
