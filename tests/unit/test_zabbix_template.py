"""The shipped Zabbix 6.0 template is well-formed and agrees with what MultiFlexi sends.

Importing it into a real Zabbix server is not possible here; these checks cover what can
be checked offline: XML, version, unique UUIDv4s, item keys, macros and JSON paths.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from multiflexi.actions.zabbix import item_key
from multiflexi.monitoring.zabbix import LLD_KEY, lld_value, phase_key, phase_value
from tests.conftest import REPO
from tests.unit.test_actions_options import info

TEMPLATE = REPO / "zabbix" / "multiflexi_template.xml"
NAME = "MultiFlexi by Zabbix trapper"
MACRO_CODE = "{#COMPANY_CODE}-{#APP_CODE}-{#RUNTEMPLATE_ID}"


def root() -> ET.Element:
    return ET.parse(TEMPLATE).getroot()


def test_the_template_is_well_formed_zabbix_6_0_with_unique_uuid4s() -> None:
    doc = root()
    assert doc.tag == "zabbix_export" and doc.findtext("version") == "6.0"
    uuids = [e.text or "" for e in doc.iter("uuid")]
    assert len(uuids) == len(set(uuids)) >= 8
    for value in uuids:  # Zabbix refuses anything but UUIDv4 written as 32 hex digits
        assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", value), value
    assert doc.findtext("templates/template/template") == NAME


def test_the_discovery_rule_is_the_trapper_key_the_hook_sends_to() -> None:
    rule = root().find("templates/template/discovery_rules/discovery_rule")
    assert rule is not None
    assert rule.findtext("key") == LLD_KEY and rule.findtext("type") == "TRAP"


def test_every_macro_the_template_uses_is_in_the_discovery_value() -> None:
    text = TEMPLATE.read_text()
    used = set(re.findall(r"\{#[A-Z_]+\}", text))
    [sent] = json.loads(lld_value(info()))
    assert used <= set(sent), used - set(sent)
    assert all(re.fullmatch(r"\{#[A-Z_]+\}", k) for k in sent)  # what LLD accepts as is


def test_item_keys_and_json_paths_match_the_values_we_send() -> None:
    doc = root()
    prototypes = doc.findall(".//item_prototype")
    keys = {p.findtext("key") for p in prototypes}
    job = info(
        runtemplate_id=3,
        begin=datetime(2026, 1, 1, tzinfo=UTC),
        end=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
    )

    def as_macros(key: str) -> str:
        return key.replace(job.item_code, MACRO_CODE)

    assert as_macros(phase_key(job)) in keys
    assert item_key(f"{MACRO_CODE}-data") in keys
    done = json.loads(phase_value(job, "jobDone"))
    for proto in prototypes:
        if proto.findtext("type") != "DEPENDENT":
            continue
        assert proto.findtext("master_item/key") in keys
        path = proto.findtext("preprocessing/step/parameters/parameter") or ""
        assert path.startswith("$.") and path[2:] in done, path
    assert done["failed"] == 1 and done["phase"] == "jobDone"


def test_triggers_reference_items_of_this_template() -> None:
    doc = root()
    keys = {p.findtext("key") for p in doc.findall(".//item_prototype")}
    expressions = [t.findtext("expression") or "" for t in doc.iter("trigger_prototype")]
    assert len(expressions) == 2
    for expression in expressions:
        match = re.search(rf"\(/{re.escape(NAME)}/([^,)]+\])", expression)
        assert match and match.group(1) in keys, expression
    assert any(e.startswith("nodata(") for e in expressions)
    assert any("multiflexi.job.failed" in e for e in expressions)


def test_the_schedule_errors_item_and_its_trigger_read_what_the_scheduler_sends() -> None:
    from datetime import UTC, datetime

    from multiflexi.monitoring.zabbix import SCHEDULE_ERRORS_KEY, schedule_errors_value

    items = {i.findtext("key"): i for i in root().findall("templates/template/items/item")}
    trap, count = items[SCHEDULE_ERRORS_KEY], items[f"{SCHEDULE_ERRORS_KEY}.count"]
    assert trap.findtext("type") == "TRAP" and trap.findtext("value_type") == "TEXT"
    assert count.findtext("type") == "DEPENDENT"
    assert count.findtext("master_item/key") == SCHEDULE_ERRORS_KEY
    path = count.findtext("preprocessing/step/parameters/parameter") or ""
    row = {
        "runtemplate_id": 1, "runtemplate": "r", "company": "c", "app": "a", "app_code": "A",
        "error": "e", "since": datetime(2026, 1, 1, tzinfo=UTC),
    }  # fmt: skip
    assert json.loads(schedule_errors_value([row]))[path[2:]] == 1
    [expression] = [t.findtext("expression") for t in count.iter("trigger")]
    assert expression == f"last(/{NAME}/{SCHEDULE_ERRORS_KEY}.count)>0"
