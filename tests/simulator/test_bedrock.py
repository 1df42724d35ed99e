"""The simulator's Bedrock runtime against AWS's own client (botocore's ``bedrock-runtime``).

botocore builds, signs (SigV4) and parses every request and answer here from
its published service model, so these tests hold the simulator to Bedrock's
contract: Converse, ConverseStream (AWS event stream), InvokeModel with an
Anthropic body, and AWS's errors. The usage botocore parses must equal the
simulator's ground truth, which the gateway tests rely on.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from metis.simulator.bedrock import new_keypair
from tests.plugins.simulator import Simulator

CLAUDE = "anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA = "amazon.nova-pro-v1:0"


def _client(sim: Simulator, akid: str, secret: str) -> Any:
    return botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=sim.url,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),  # no retries: one call per test
    )


@pytest.fixture
def bedrock(simulator: Simulator) -> Any:
    return _client(simulator, *new_keypair())


def test_converse_usage_is_the_ground_truth(bedrock: Any, simulator: Simulator) -> None:
    out = bedrock.converse(
        modelId=NOVA,
        messages=[{"role": "user", "content": [{"text": "Hello, Bedrock."}]}],
        inferenceConfig={"maxTokens": 100},
    )
    assert out["output"]["message"]["content"][0]["text"]
    u = out["usage"]
    (call,) = simulator.calls()
    assert (u["inputTokens"], u["outputTokens"]) == (call["input_tokens"], call["output_tokens"])
    assert u["totalTokens"] == u["inputTokens"] + u["outputTokens"]
    assert (call["provider"], call["model"]) == ("aws", NOVA)
    assert call["cost_nanousd"] > 0


def test_converse_stream_ends_with_the_usage_metadata(bedrock: Any, simulator: Simulator) -> None:
    events = list(
        bedrock.converse_stream(
            modelId=NOVA, messages=[{"role": "user", "content": [{"text": "Stream, please."}]}]
        )["stream"]
    )
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert text
    u = events[-1]["metadata"]["usage"]
    (call,) = simulator.calls()
    assert (u["inputTokens"], u["outputTokens"]) == (call["input_tokens"], call["output_tokens"])


def test_invoke_model_takes_an_anthropic_body(bedrock: Any, simulator: Simulator) -> None:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hi."}],
    }
    out = bedrock.invoke_model(modelId=CLAUDE, body=json.dumps(body))
    msg = json.loads(out["body"].read())
    assert msg["type"] == "message" and msg["id"].startswith("msg_bdrk_")
    (call,) = simulator.calls()
    assert msg["id"] == call["response_id"]
    assert (msg["usage"]["input_tokens"], msg["usage"]["output_tokens"]) == (
        call["input_tokens"],
        call["output_tokens"],
    )
    with pytest.raises(ClientError) as extraneous:  # Bedrock refuses Anthropic's own "model"
        bedrock.invoke_model(modelId=CLAUDE, body=json.dumps({**body, "model": "claude"}))
    assert extraneous.value.response["Error"]["Code"] == "ValidationException"


def test_a_wrong_secret_fails_the_signature_check(simulator: Simulator) -> None:
    akid, _ = new_keypair()
    _, other_secret = new_keypair()
    client = _client(simulator, akid, other_secret)
    with pytest.raises(ClientError) as refused:
        client.converse(modelId=NOVA, messages=[{"role": "user", "content": [{"text": "x"}]}])
    err = refused.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err["Error"]["Code"] == "InvalidSignatureException"
    assert simulator.calls() == []


def test_a_throttle_fault_is_awss_throttling_exception(bedrock: Any, simulator: Simulator) -> None:
    simulator.set_fault(f"/model/{NOVA}/converse", "429", count=1)
    with pytest.raises(ClientError) as throttled:
        bedrock.converse(modelId=NOVA, messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert simulator.calls() == []
