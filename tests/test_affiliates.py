"""`import-affiliates lemonsqueezy`: the store's affiliates become Partnero partners, once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.bridge_process import ROOT
from tests.inprocess_kit import fixture
from tests.partnero_server import PartneroServer
from tests.provider_api_server import API_KEY, ProviderApiServer


def affiliate(ident: str, name: str, email: str, status: str = "active") -> Any:
    # tests/fixtures/lemonsqueezy/api/affiliate.json (SOURCES.md there); id, person and status edited
    item = fixture("lemonsqueezy", "api/affiliate.json")
    item["id"] = ident
    item["attributes"].update(user_name=name, user_email=email, status=status)
    return item


def _config(tmp_path: Path, partnero: PartneroServer, api: ProviderApiServer, **partnero_settings: Any) -> Path:
    endpoint = {
        "provider": "lemonsqueezy",
        "secret": "s" * 16,
        "api_key": API_KEY,
        "api_base_url": f"{api.url}/v1",
        "api_requests_per_second": 1000,
    }
    raw = {
        "store": f"sqlite:///{tmp_path}/bridge.db",
        "partnero": {"api_key": partnero.api_key, "base_url": partnero.url, **partnero_settings},
        "endpoints": {"lemon": endpoint, "paddle-ish": {"provider": "creem", "secret": "c" * 16}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def import_affiliates(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "import-affiliates", *extra, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_affiliates_become_partners_once(tmp_path: Path, partnero: PartneroServer) -> None:
    partnero.add_partner("ptr_known", email="Known@Example.com")
    with ProviderApiServer("lemonsqueezy") as api:
        api.add("/v1/affiliates", affiliate("1", "John Doe", "john@example.com"))
        api.add("/v1/affiliates", affiliate("2", "Ada Lovelace King", "known@example.com"))
        api.add("/v1/affiliates", affiliate("3", "Pat Pending", "pat@example.com", status="pending"))
        api.add("/v1/affiliates", affiliate("4", "Dee Disabled", "dee@example.com", status="disabled"))
        config = _config(tmp_path, partnero, api)

        dry = import_affiliates(config, "lemonsqueezy", "--endpoint", "lemon", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "affiliates/1: would create a partner" in dry.stdout
        assert "dry run: created 1, already partners 1, skipped 2" in dry.stdout
        assert set(partnero.partners) == {"ptr_known"}

        first = import_affiliates(config, "lemonsqueezy", "--endpoint", "lemon")
        assert first.returncode == 0, first.stderr
        created = [p for p in partnero.partners.values() if p.email == "john@example.com"]
        assert [(p.name, p.surname) for p in created] == [("John", "Doe")]
        assert f"affiliates/1: created partner {created[0].key}" in first.stdout
        assert "affiliates/2: already partner ptr_known" in first.stdout
        assert "affiliates/3: skipped (status pending, not active)" in first.stdout
        assert (
            "created 1, already partners 1, skipped 2 (1 status pending, 1 status disabled), failed 0" in first.stdout
        )
        # names and emails stay out of what the command prints
        assert "john@example.com" not in first.stdout and "John" not in first.stdout

        again = import_affiliates(config, "lemonsqueezy", "--endpoint", "lemon")
        assert "created 0, already partners 2" in again.stdout
        assert len(partnero.partners) == 2
        posts = [r for r in partnero.requests if r.method == "POST" and r.path == "/v1/partners"]
        assert len(posts) == 1


def test_wrong_endpoint_or_missing_keys_are_refused(tmp_path: Path, partnero: PartneroServer) -> None:
    with ProviderApiServer("lemonsqueezy") as api:
        config = _config(tmp_path, partnero, api)
        wrong = import_affiliates(config, "lemonsqueezy", "--endpoint", "paddle-ish")
        assert wrong.returncode == 2 and "is a creem endpoint, not lemonsqueezy" in wrong.stderr
        creem = import_affiliates(config, "creem", "--endpoint", "paddle-ish")
        assert creem.returncode == 2 and "import-affiliates is not available for this provider" in creem.stderr
        no_key = _config(tmp_path, partnero, api, api_key="")
        refused = import_affiliates(no_key, "lemonsqueezy", "--endpoint", "lemon")
        assert refused.returncode == 1 and "has no Partnero api_key" in refused.stderr
