"""Load cells and gates over MQTT through a real broker (Debian's mosquitto, started here on a free
port): good readings reach the runtime's merge in time order, bad ones are counted and left out, and
the client reconnects when the broker restarts."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from runtime.clock import ManualClock
from runtime.devices import BadMessage, MqttSensors, decode, encode
from runtime.messages import GateEvent, WeightSample
from runtime.sources import LiveMerge

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, folder: Path):
        self.port = _free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.fail("mosquitto is not installed: `make test` installs it (Debian package mosquitto)")
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def _publisher(port: int):
    from paho.mqtt import client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="device")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _wait(cond, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline and not cond():
        time.sleep(0.02)
    return cond()


def test_payloads_round_trip_and_bad_ones_say_what_is_wrong() -> None:
    for m in (WeightSample("U1/0/0", 1.25, 512.5), GateEvent("gate_in", 3.0, "acc_7", "enter")):
        assert decode("store", *encode("store", m)) == m
    bad = [("store/cells/c", b"garbage", "not JSON"), ("store/cells/c", b'{"t": 1}', "field missing"),
           ("store/cells/c", b'{"t": 1, "grams": NaN}', "bad value"), ("store/cells/c", b'{"t": 1, "grams": 1e9}', "bad value"),
           ("store/gates/g", b'{"t": 1, "account_id": "a", "kind": "in"}', "bad value"),
           ("store/shelves/c", b'{"t": 1, "grams": 1}', "topic"), ("store/cells/c", b"\xff\xfe", "not JSON")]
    for topic, payload, kind in bad:
        with pytest.raises(BadMessage) as e:
            decode("store", topic, payload)
        assert e.value.kind == kind, (payload, e.value)


def test_load_cells_and_gates_over_a_real_broker(broker) -> None:
    merge = LiveMerge(lateness_s=0.0, clock=ManualClock(start_s=1e9))   # release at once: order is tested in test_sources
    sensors = MqttSensors(merge, port=broker.port, prefix="shop", cells={"U1/0/0", "U1/0/1"}, gates={"gate_in"})
    try:
        assert _wait(lambda: sensors.connects == 1)
        pub = _publisher(broker.port)
        good = [WeightSample("U1/0/0", 0.1 * k, 500.0 - k) for k in range(20)] + [GateEvent("gate_in", 0.5, "acc", "enter")]
        for m in good:
            pub.publish(*encode("shop", m), qos=1).wait_for_publish(5)
        for topic, payload in [("shop/cells/U1/0/0", b"garbage"), ("shop/cells/U9/0/0", b'{"t": 1, "grams": 5}'),
                               ("shop/cells/U1/0/1", b'{"t": 1, "grams": "nan"}'),
                               ("shop/cells/U1/0/0", b'{"t": 0.5, "grams": 480}')]:   # its clock jumped back
            pub.publish(topic, payload, qos=1).wait_for_publish(5)
        assert _wait(lambda: sensors.received == len(good) + 4)
        got = merge.poll()
        assert sorted(got, key=lambda m: (m.t, type(m).__name__)) == sorted(good, key=lambda m: (m.t, type(m).__name__))
        assert sensors.bad == {"not JSON": 1, "unknown device": 1, "bad value": 1, "time backwards": 1}
        pub.loop_stop()
        pub.disconnect()
    finally:
        sensors.close()


def test_the_client_comes_back_after_a_broker_restart(broker) -> None:
    merge = LiveMerge(lateness_s=0.0, clock=ManualClock(start_s=1e9))
    sensors = MqttSensors(merge, port=broker.port, prefix="shop")
    try:
        assert _wait(lambda: sensors.connects == 1)
        broker.stop()
        t0 = time.time()
        broker.start()
        assert _wait(lambda: sensors.connects == 2, timeout=40), "reconnected and subscribed again"
        pub = _publisher(broker.port)
        pub.publish(*encode("shop", WeightSample("c", 1.0, 2.0)), qos=1).wait_for_publish(5)
        assert _wait(lambda: sensors.received == 1)
        assert [m.grams for m in merge.poll()] == [2.0]
        assert time.time() - t0 < 40
        pub.loop_stop()
        pub.disconnect()
    finally:
        sensors.close()


# -- the devices file --------------------------------------------------------------------------------

def _store():
    from harness.paths import store_dir
    from runtime.store import load_store

    return load_store(store_dir() / "tiny_unit.yaml")


def test_a_devices_file_is_read_against_the_store(tmp_path) -> None:
    from runtime.devices import load_devices

    store = _store()
    cam = store.cameras[0].id
    f = tmp_path / "tiny.yaml"
    f.write_text(f"store: tiny_unit\nbroker: {{host: 10.0.0.2, port: 1884, prefix: shop, password_env: BROKER_PW}}\n"
                 f"cameras:\n  {cam}: rtsp://10.0.0.11:8554/{cam}\ncells: mqtt\ngates: mqtt\n")
    d = load_devices(f, store)
    assert d.broker.port == 1884 and d.broker.password_env == "BROKER_PW" and d.cameras == {cam: f"rtsp://10.0.0.11:8554/{cam}"}


@pytest.mark.parametrize("text, field", [
    ("broker: {password: hunter2}", "broker.password"),
    ("broker: {port: 99999}", "broker.port"),
    ("cameras: {cam_99: rtsp://x/y}", "cameras.cam_99"),
    ("cameras: {CAM: 'rtsp://admin:pw@10.0.0.11/s'}", "cameras.CAM"),
    ("cells: serial", "cells"),
    ("cells: {serial: {/dev/ttyUSB0: {cells: [U/9/9]}}}", "cells.serial./dev/ttyUSB0.cells"),
    ("cells: {serial: {/dev/ttyUSB0: {cells: [U/0/0], baud: fast}}}", "cells.serial./dev/ttyUSB0.baud"),
    ("gates: {http: {port: 0}}", "gates.http.port"),
    ("store: corner_shop", "store"),
    ("lights: on", "lights"),
])
def test_a_bad_devices_file_is_one_line_naming_the_field(tmp_path, text, field) -> None:
    from runtime.devices import load_devices
    from runtime.store import SpecError

    store = _store()
    f = tmp_path / "d.yaml"
    f.write_text(text.replace("CAM", store.cameras[0].id))
    with pytest.raises(SpecError) as e:
        load_devices(f, store)
    assert e.value.field == field.replace("CAM", store.cameras[0].id) and str(f) in str(e.value)
    assert "\n" not in str(e.value)


def test_every_shipped_devices_file_fits_its_store() -> None:
    from harness.paths import home, store_dir
    from runtime.devices import load_devices
    from runtime.store import load_store

    files = sorted((home() / "conf" / "devices").glob("*.yaml"))
    assert files
    for f in files:
        store = load_store(store_dir() / f.name)
        d = load_devices(f, store)
        assert set(d.cameras) == {c.id for c in store.cameras}, f"{f.name}: every camera has a stream"


def test_load_cells_on_a_serial_line(tmp_path) -> None:
    """An HX711 board's lines through a pseudo-terminal (the kernel's serial line pair): good readings
    reach the merge stamped on arrival, bad lines are counted."""
    import os

    from runtime.devices import SerialCells

    master, slave = os.openpty()
    merge = LiveMerge(lateness_s=0.0, clock=ManualClock(start_s=1e9))
    cells = SerialCells(merge, os.ttyname(slave), ["U/0/0", "U/0/1"], baud=115200, clock=ManualClock(start_s=5.0))
    try:
        assert _wait(lambda: cells.opens == 1), "the port opened (what came before is flushed)"
        os.write(master, b"0,512.5\n1,480.0\ngarbage\n7,1.0\n0,nan\n0,511.9\n")
        assert _wait(lambda: cells.lines == 6)
        got = merge.poll()
        assert [(m.cell_id, m.grams) for m in got] == [("U/0/0", 512.5), ("U/0/1", 480.0), ("U/0/0", 511.9)]
        assert cells.bad == {"not a reading": 1, "unknown device": 1, "bad value": 1}
    finally:
        cells.close()
        os.close(master)
        os.close(slave)


def test_gates_over_http_post() -> None:
    import urllib.error
    import urllib.request

    from runtime.devices import HttpGates

    merge = LiveMerge(lateness_s=0.0, clock=ManualClock(start_s=1e9))
    gates = HttpGates(merge, port=0, host="127.0.0.1", gates={"gate_in"}, clock=ManualClock(start_s=500.0))

    def post(path: str, body: bytes) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{gates.port}{path}", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        assert post("/gates/gate_in", b'{"account_id": "a1", "kind": "enter", "t": 12.5}') == 202
        assert post("/gates/gate_in", b'{"account_id": "a2", "kind": "enter"}') == 202     # stamped on arrival
        assert post("/gates/gate_in", b"garbage") == 400
        assert post("/gates/gate_in", b'{"account_id": "a3", "kind": "in"}') == 400
        assert post("/gates/gate_x", b'{"account_id": "a4", "kind": "enter"}') == 404
        got = merge.poll()
        assert [(m.account_id, m.t) for m in got] == [("a1", 12.5), ("a2", 500.0)]
        assert gates.bad == {"not JSON": 1, "bad value": 1, "unknown device": 1}
    finally:
        gates.close()


def test_a_gate_scan_is_acknowledged_only_once_decided(tmp_path) -> None:
    """With hold_gates, a scan the runtime never decided (it was killed) comes again from the broker
    to the next client of the same session; one acknowledged does not. A reading is acknowledged at
    once."""
    from harness.servers import Mosquitto

    b = Mosquitto(folder=tmp_path / "mq").start()
    try:
        def client():
            merge = LiveMerge(lateness_s=0.0, clock=ManualClock(start_s=1e9))
            s = MqttSensors(merge, port=b.port, prefix="shop", client_id="edge", hold_gates=True)
            assert _wait(lambda: s.connects == 1)
            return merge, s

        merge, s = client()
        pub = _publisher(b.port)
        g = GateEvent("gate_in", 5.0, "acc", "enter")
        pub.publish(*encode("shop", g), qos=1).wait_for_publish(5)
        pub.publish(*encode("shop", WeightSample("c", 5.0, 1.0)), qos=1).wait_for_publish(5)
        assert _wait(lambda: s.received == 2)
        s.close()                                  # killed before deciding the scan
        merge, s = client()
        assert _wait(lambda: s.received == 1), "the scan again; the reading not"
        assert merge.poll() == [g]
        s.ack_gate(g)
        time.sleep(0.3)
        s.close()
        merge, s = client()
        time.sleep(1.0)
        assert s.received == 0, "acknowledged: not again"
        s.close()
        pub.loop_stop()
        pub.disconnect()
    finally:
        b.close()
