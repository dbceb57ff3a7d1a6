"""docs/asyncapi.yaml is the document the code generates, and the AsyncAPI project's own
parser (@asyncapi/parser, from the npm registry) finds no error in it.

The parser is installed once into a folder of the virtualenv (``make clean`` removes it);
the test is skipped, saying why, only on a machine without node and npm.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contract.headers import CE_TRACEPARENT, TRACEPARENT
from contract.topics import DLQ, STREAMS, topic_name
from ingester import asyncapi

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
VALIDATE = ROOT / "tests" / "asyncapi" / "validate.cjs"
PARSER = "@asyncapi/parser@3"
CACHE = Path(sys.prefix) / "asyncapi-parser"
NODE, NPM = shutil.which("node"), shutil.which("npm")


def test_the_committed_document_is_the_generated_one() -> None:
    assert DOCUMENT.read_text() == asyncapi.render(), "run `make docs`"


def test_every_topic_has_a_channel_and_the_records_headers() -> None:
    document = yaml.safe_load(DOCUMENT.read_text())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {topic_name("", stream) for stream in (*STREAMS, DLQ)}
    headers = document["components"]["schemas"]["CloudEventHeaders"]["properties"]
    assert {TRACEPARENT, CE_TRACEPARENT} <= set(headers)


def _parser() -> Path:
    modules = CACHE / "node_modules"
    if not (modules / "@asyncapi" / "parser").is_dir():
        assert NPM is not None
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [NPM, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", PARSER],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"npm install {PARSER} failed:\n{done.stderr[-4000:]}"
    return modules


@pytest.mark.skipif(
    NODE is None or NPM is None, reason="node and npm are not installed (Debian: nodejs, npm)"
)
def test_the_asyncapi_parser_accepts_the_document() -> None:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(VALIDATE), str(DOCUMENT)],
        env={"NODE_PATH": str(_parser()), "PATH": str(Path(NODE).parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    diagnostics = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    errors = [d for d in diagnostics if d["severity"] == 0]
    assert done.returncode == 0 and not errors, done.stdout + done.stderr
