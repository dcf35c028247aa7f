"""The Event Service subscription and the Container Service command, checked the way XNAT
checks them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from qmroct.xnat.archived import main as archived_main

INFRA = Path(__file__).resolve().parents[2] / "infra" / "xnat"


def test_subscription_payload_filter_is_a_bare_jsonpath_predicate() -> None:
    sub = json.loads((INFRA / "event-subscription.json").read_text())
    flt = sub["event-filter"]
    # EventSubscriptionEntityServiceImpl.validate refuses a filter that starts with "$" or
    # contains "$[?", then compiles "$[?(" + filter + ")]" itself.
    assert not flt["payload-filter"].startswith("$") and "$[?" not in flt["payload-filter"]
    assert flt["payload-filter"].startswith("@.")
    assert "xnat:optSessionData" in flt["payload-filter"]
    assert flt["event-type"] == "org.nrg.xnat.eventservice.events.SessionEvent"
    assert flt["status"] == "CREATED"
    assert sub["action-key"].startswith("org.nrg.containers.services.CommandActionProvider:")


def test_every_command_line_key_has_an_input_and_trigger_auth_exists() -> None:
    cmd = json.loads((INFRA / "command.json").read_text())
    keys = set(re.findall(r"#[A-Z_]+#", cmd["command-line"]))
    inputs = {i["replacement-key"]: i for i in cmd["inputs"]}
    assert keys == set(inputs)
    auth = next(i for i in cmd["inputs"] if i["name"] == "TRIGGER_AUTH")
    assert auth["command-line-flag"] == "--trigger-auth" and auth["required"] is False
    # The flag the command passes is one the module takes.
    for i in cmd["inputs"]:
        if "command-line-flag" in i:
            assert i["command-line-flag"] in ("--trigger-url", "--trigger-auth")
    for wrapper in cmd["xnat"]:
        provided = {
            d["provides-value-for-command-input"]
            for d in wrapper["derived-inputs"]
            if "provides-value-for-command-input" in d
        }
        required = {i["name"] for i in cmd["inputs"] if i["required"]}
        assert required <= provided


def test_archived_module_takes_the_flags(capsys) -> None:  # noqa: ANN001
    try:
        archived_main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "--trigger-url" in out and "--trigger-auth" in out
