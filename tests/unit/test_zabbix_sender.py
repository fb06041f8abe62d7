"""Sending to Zabbix: the real protocol on the wire, time bounds, outages, and a
cross-check against Debian's own ``zabbix_sender`` binary."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time

import pytest

from multiflexi.config import settings_from_values
from multiflexi.monitoring import zabbix
from multiflexi.monitoring.zabbix import ZabbixTarget, send, send_failures, zabbix_target
from tests.support_servers import TrapperServer, closed_port


def test_monitoring_is_off_without_a_server_and_reads_port_host_and_timeout() -> None:
    assert zabbix_target(settings_from_values({})) is None
    target = zabbix_target(
        settings_from_values(
            {"ZABBIX_SERVER": "zbx.example", "ZABBIX_HOST": "mf1", "ZABBIX_TIMEOUT": "1.5"}
        )
    )
    assert target == ZabbixTarget("zbx.example", 10051, "mf1", 1.5)
    assert target.host_for("company-host") == "company-host"
    assert target.host_for("") == "mf1"


def test_a_send_speaks_the_zabbix_protocol_with_every_field() -> None:
    with TrapperServer() as trapper:
        target = ZabbixTarget("127.0.0.1", trapper.port, "h")
        before = int(time.time())
        result = send(target, [("mf-host", "job-[acme-APP-1]", '{"phase": "jobStart"}')])
        [packet] = trapper.wait_for(1)
    assert result.ok and result.processed == 1, result.message
    assert packet.flags == 0x01  # Zabbix protocol, not compressed
    assert packet.datalen == len(packet.raw) and packet.reserved == 0
    assert packet.data["request"] == "sender data"
    [item] = packet.items()
    assert item["host"] == "mf-host" and item["key"] == "job-[acme-APP-1]"
    assert json.loads(item["value"]) == {"phase": "jobStart"}
    assert before <= item["clock"] <= int(time.time())


def test_an_unknown_item_is_a_counted_failure_with_the_servers_numbers() -> None:
    with TrapperServer(mode="unknown") as trapper:
        before = send_failures()
        result = send(ZabbixTarget("127.0.0.1", trapper.port), [("h", "nokey", "1")])
    assert not result.ok and "processed 0, failed 1" in result.message
    assert send_failures() == before + 1


def test_a_hanging_server_costs_at_most_the_timeout() -> None:
    with TrapperServer(mode="hang") as trapper:
        started = time.monotonic()
        result = send(ZabbixTarget("127.0.0.1", trapper.port, timeout=0.5), [("h", "k", "v")])
        elapsed = time.monotonic() - started
    assert not result.ok and "did not answer within 0.5 s" in result.message
    assert elapsed < 1.5


def test_an_answer_that_is_not_zabbix_fails_cleanly() -> None:
    with TrapperServer(mode="garbage") as trapper:
        result = send(ZabbixTarget("127.0.0.1", trapper.port), [("h", "k", "v")])
    assert not result.ok


def test_an_outage_is_logged_once_counted_every_time_and_its_end_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = ZabbixTarget("127.0.0.1", closed_port(), timeout=1.0)
    zabbix._down = False
    before = send_failures()
    with caplog.at_level(logging.INFO, logger="multiflexi.zabbix"):
        for _ in range(3):
            assert not send(down, [("h", "k", "v")]).ok
        with TrapperServer() as trapper:
            assert send(ZabbixTarget("127.0.0.1", trapper.port), [("h", "k", "v")]).ok
    assert send_failures() == before + 3
    downs = [r for r in caplog.records if "zabbix_down" in r.getMessage()]
    backs = [r for r in caplog.records if "zabbix_back" in r.getMessage()]
    assert len(downs) == 1 and len(backs) == 1


ZABBIX_SENDER = shutil.which("zabbix_sender")


@pytest.mark.skipif(
    ZABBIX_SENDER is None,
    reason="zabbix_sender is not installed (Debian: apt-get install zabbix-agent, which "
    "ships /usr/bin/zabbix_sender)",
)
def test_our_packet_matches_what_debians_zabbix_sender_sends() -> None:
    assert ZABBIX_SENDER is not None
    value = '{"phase": "jobDone", "exitcode": 0, "text": "žluťoučký kůň"}'
    with TrapperServer() as trapper:
        done = subprocess.run(
            [
                ZABBIX_SENDER,
                "-z",
                "127.0.0.1",
                "-p",
                str(trapper.port),
                "-s",
                "mf-host",
                "-k",
                "job-[acme-APP-1]",
                "-o",
                value,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "processed: 1" in done.stdout
        ours = send(
            ZabbixTarget("127.0.0.1", trapper.port), [("mf-host", "job-[acme-APP-1]", value)]
        )
        assert ours.ok
        theirs_packet, ours_packet = trapper.wait_for(2)
    assert theirs_packet.flags == ours_packet.flags == 0x01
    assert theirs_packet.reserved == ours_packet.reserved == 0
    assert theirs_packet.data["request"] == ours_packet.data["request"] == "sender data"

    def triple(item: dict[str, object]) -> tuple[object, object, object]:
        return item["host"], item["key"], item["value"]

    assert [triple(i) for i in theirs_packet.items()] == [triple(i) for i in ours_packet.items()]
