"""Device protocols: a store's load cells and gates over MQTT (or a serial line, an HTTP POST).

The payloads (one JSON object per message, UTF-8; the topic names the device):

- a load cell's reading: topic ``<prefix>/cells/<cell_id>`` (the id as the store file writes it,
  slashes and all: ``store/cells/U1/0/2``), ``{"t": <s>, "grams": <g>}``, or several readings of
  that cell at once, oldest first: ``{"readings": [[<s>, <g>], ...]}`` (a board sampling at 80 Hz
  sends ten messages a second, not eighty: a store's worth of cells is then a few hundred
  messages a second, not thousands);
- a gate event: topic ``<prefix>/gates/<gate_id>``, ``{"t": <s>, "account_id": "...", "kind": "enter" | "exit"}``.

``t`` is the store clock (seconds; the clock the cameras' stamps use). Readings are published and
subscribed with QoS 1 (at least once: a duplicate is possible and harmless, a step detector sees
the same reading twice). :class:`MqttSensors` subscribes to both, checks each message and puts
the good ones into a :class:`runtime.sources.LiveMerge`; a message that is not JSON, lacks a
field, carries a value no device sends (not a finite number, grams beyond a tonne, a kind that is
neither) or names a device the store file does not list is logged (the first few of each kind)
and counted in :attr:`MqttSensors.bad`, and the runtime goes on. :func:`encode` is the publishing
side (``storetwin serve`` and tests use it).
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from runtime.messages import GateEvent, WeightSample, gate_key
from runtime.sources import LiveMerge, implausible
from runtime.store import SpecError, StoreSpec, read_yaml

log = logging.getLogger(__name__)
QOS = 1
LOGGED = 5    # per kind of bad message: logged one by one; the rest only counted


class BadMessage(ValueError):
    """A device message that cannot be taken; ``kind`` is what the counters group it under."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


def encode(prefix: str, msg: WeightSample | GateEvent) -> tuple[str, bytes]:
    """The topic and payload a device publishes for ``msg``."""
    if isinstance(msg, WeightSample):
        return f"{prefix}/cells/{msg.cell_id}", json.dumps({"t": msg.t, "grams": msg.grams}).encode()
    return (f"{prefix}/gates/{msg.gate_id}",
            json.dumps({"t": msg.t, "account_id": msg.account_id, "kind": msg.kind}).encode())


def encode_readings(prefix: str, cell_id: str, readings: list[WeightSample]) -> tuple[str, bytes]:
    """The topic and payload of several readings of one cell, oldest first."""
    return f"{prefix}/cells/{cell_id}", json.dumps({"readings": [[m.t, m.grams] for m in readings]}).encode()


def decode_all(prefix: str, topic: str, payload: bytes) -> list[WeightSample | GateEvent]:
    """The messages a device sent (several readings of a cell at once, or one message), or
    :class:`BadMessage` saying what is wrong with them."""
    if b'"readings"' in payload and topic.startswith(f"{prefix}/cells/"):
        try:
            d = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise BadMessage("not JSON", f"not a JSON object ({type(e).__name__})") from None
        rows = d.get("readings") if isinstance(d, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 2 for r in rows):
            raise BadMessage("bad value", "readings: expected a list of [t, grams] pairs")
        return [decode(prefix, topic, json.dumps({"t": t, "grams": g}).encode()) for t, g in rows]
    return [decode(prefix, topic, payload)]


def decode(prefix: str, topic: str, payload: bytes) -> WeightSample | GateEvent:
    """The message a device sent, or :class:`BadMessage` saying what is wrong with it."""
    kind, device = None, ""
    for k in ("cells", "gates"):     # a cell's id has slashes of its own (U1/0/2): the rest of the topic
        if topic.startswith(f"{prefix}/{k}/"):
            kind, device = k, topic[len(prefix) + len(k) + 2:]
    if kind is None or not device:
        raise BadMessage("topic", f"topic {topic!r}: expected {prefix}/cells/<cell_id> or {prefix}/gates/<gate_id>")
    try:
        d = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadMessage("not JSON", f"not a JSON object ({type(e).__name__})") from None
    if not isinstance(d, dict):
        raise BadMessage("not JSON", f"expected a JSON object, got {type(d).__name__}")
    try:
        t = float(d["t"])
        if kind == "cells":
            grams = float(d["grams"])
        else:
            account, gate_kind = str(d["account_id"]), d["kind"]
    except KeyError as e:
        raise BadMessage("field missing", f"field {e.args[0]!r} missing") from None
    except (TypeError, ValueError) as e:
        raise BadMessage("bad value", f"expected numbers ({e})") from None
    msg = WeightSample(device, t, grams) if kind == "cells" else GateEvent(device, t, account, gate_kind)
    why = implausible(msg)
    if why:
        raise BadMessage("bad value", why)
    return msg


class BadMessages(Counter):
    """Messages a device source left out, by kind; the first :data:`LOGGED` of each kind logged
    with what was wrong (a device that sends garbage all day fills no disk)."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source

    def note(self, kind: str, text: str | None = None) -> None:
        self[kind] += 1
        if text is not None and self[kind] <= LOGGED:
            log.warning("%s: %s; left out (counted as %r)", self.source, text, kind)


class MqttSensors:
    """A store's load cells and gates from an MQTT broker into ``merge``.

    A device's clock that jumps back (a message stamped more than ``BACKWARDS_S`` before that
    device's previous one) is a bad message too (``time backwards``): the runtime's step detectors
    take each cell's readings in time order.

    ``cells`` and ``gates``: the ids the store file lists (others are counted as unknown).
    Credentials come from the environment (``username_env``, ``password_env``: the variables'
    names), never from a file. The client reconnects by itself (1 s, doubling to 30 s) and
    subscribes again on every connection; :attr:`connects` counts them."""

    BACKWARDS_S = 0.05

    def __init__(self, merge: LiveMerge, host: str = "localhost", port: int = 1883, prefix: str = "store",
                 cells: set[str] | None = None, gates: set[str] | None = None,
                 username_env: str | None = None, password_env: str | None = None, client_id: str = "storetwin",
                 hold_gates: bool = False):
        from paho.mqtt import client as mqtt

        self.merge, self.prefix = merge, prefix
        self.cells, self.gates = cells, gates
        self.bad = BadMessages("MQTT")     # kind (topic, not JSON, field missing, bad value, unknown device) → messages left out
        self.received = 0                 # MQTT messages
        self.taken = 0                    # readings and scans handed to the merge
        self.connects = 0
        self.outages: list[float] = []    # seconds from a lost connection to the next one
        self._last_t: dict[tuple[str, str], float] = {}   # (cells|gates, device) → its newest reading's time
        self._lost_at: float | None = None
        # hold_gates: a gate scan is acknowledged to the broker only once the runtime has decided it
        # (ack_gate): a runtime killed before that gets it again from the broker when it restarts
        self.hold_gates = hold_gates
        self._held: dict[tuple, tuple[int, int]] = {}
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                      manual_ack=hold_gates)
        if username_env:
            user = os.environ.get(username_env)
            if user is None:
                raise ValueError(f"username_env={username_env}: the environment has no such variable")
            c.username_pw_set(user, os.environ.get(password_env) if password_env else None)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        c.connect_async(host, port, keepalive=10)
        c.loop_start()

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason)
            return
        self.connects += 1
        if self._lost_at is not None:
            import time

            self.outages.append(time.time() - self._lost_at)
            log.warning("MQTT broker connected again after %.1f s", self.outages[-1])
            self._lost_at = None
        client.subscribe([(f"{self.prefix}/cells/#", QOS), (f"{self.prefix}/gates/#", QOS)])

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:
        import time

        if self._lost_at is None:
            self._lost_at = time.time()
            log.warning("MQTT broker connection lost (%s); reconnecting", reason)

    def _message(self, client, userdata, m) -> None:
        self.received += 1
        held = False
        try:
            msgs = decode_all(self.prefix, m.topic, m.payload)
        except BadMessage as e:
            self._bad(m.topic, e)
            msgs = []
        for msg in msgs:
            try:
                self._check(msg)
            except BadMessage as e:
                self._bad(m.topic, e)
                continue
            self.taken += 1
            if self.hold_gates and isinstance(msg, GateEvent):
                self._held[gate_key(msg)] = (m.mid, m.qos)
                held = True
            self.merge.put(msg)
        if self.hold_gates and not held:
            client.ack(m.mid, m.qos)     # readings (and what could not be taken) at once

    def ack_gate(self, g: GateEvent) -> None:
        """The runtime has decided this scan (and its event log has it): the broker may forget it."""
        held = self._held.pop(gate_key(g), None)
        if held is not None:
            self.client.ack(*held)

    def _check(self, msg: WeightSample | GateEvent) -> None:
        known = self.cells if isinstance(msg, WeightSample) else self.gates
        device = msg.cell_id if isinstance(msg, WeightSample) else msg.gate_id
        if known is not None and device not in known:
            raise BadMessage("unknown device", f"{device!r} is not a "
                             f"{'load cell' if isinstance(msg, WeightSample) else 'gate'} of the store file")
        key = (type(msg).__name__, device)
        if msg.t < self._last_t.get(key, -float("inf")) - self.BACKWARDS_S:
            raise BadMessage("time backwards", f"t={msg.t:.3f} s is {self._last_t[key] - msg.t:.3f} s before "
                             f"{device!r}'s previous message")
        self._last_t[key] = max(msg.t, self._last_t.get(key, msg.t))

    def _bad(self, topic: str, e: BadMessage) -> None:
        self.bad.note(e.kind, f"{topic}: {e}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SerialCells:
    """Load cells on a serial line: the HX711 boards that shelves are wired with, one reader thread
    per port. Line format (ASCII, one reading a line): ``<channel>,<grams>\n``, the channel indexing
    the port's ``cells`` (``0,512.3`` is the first cell's reading). A board has no store clock:
    each reading is stamped when its line arrives. A line that does not read is counted in
    :attr:`bad` and logged (the first few); a port that fails is opened again with backoff.
    ``port`` is anything pyserial opens: ``/dev/ttyUSB0``, ``socket://host:port``, a pty."""

    def __init__(self, merge: LiveMerge, port: str, cells: list[str], baud: int = 115200, clock=None,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0):
        import threading

        from runtime.clock import SYSTEM_CLOCK

        self.merge, self.port, self.cells, self.baud = merge, port, list(cells), baud
        self.clock = clock or SYSTEM_CLOCK
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.bad = BadMessages(f"serial {port}")
        self.lines = self.taken = self.opens = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"serial-{port}", daemon=True)
        self._thread.start()

    def parse(self, line: bytes, t: float) -> WeightSample | None:
        self.lines += 1
        try:
            ch, grams = line.decode("ascii").strip().split(",")
            cell, g = self.cells[int(ch)], float(grams)
        except (UnicodeDecodeError, ValueError):
            self.bad.note("not a reading", f"{line[:40]!r}: expected <channel>,<grams>")
            return None
        except IndexError:
            self.bad.note("unknown device", f"channel {ch} (the port has {len(self.cells)} cells)")
            return None
        msg = WeightSample(cell, t, g)
        why = implausible(msg)
        if why:
            self.bad.note("bad value", why)
            return None
        return msg

    def _run(self) -> None:
        import serial

        backoff = self.backoff_s
        while not self._stop.is_set():
            try:
                with serial.serial_for_url(self.port, self.baud, timeout=0.5) as line_in:
                    self.opens += 1
                    backoff = self.backoff_s
                    while not self._stop.is_set():
                        raw = line_in.readline()
                        if not raw:
                            continue
                        msg = self.parse(raw, self.clock.wall_s())
                        if msg is not None:
                            self.taken += 1
                            self.merge.put(msg)
            except (OSError, serial.SerialException) as e:
                self.bad.note("port", f"{e}; opening again in {backoff:.1f} s")
                self._stop.wait(backoff)
                backoff = min(2 * backoff, self.max_backoff_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class HttpGates:
    """Gate scans as HTTP POSTs: ``POST /gates/<gate_id>`` with ``{"account_id": "...", "kind":
    "enter" | "exit", "t": <s>}`` (``t`` optional: stamped on arrival when the gate has no store
    clock). Answers 202 (taken), 400 (what is wrong with the body), 404 (no such gate). Runs on a
    thread of its own (the standard library's threading HTTP server)."""

    def __init__(self, merge: LiveMerge, port: int = 8080, host: str = "0.0.0.0", gates: set[str] | None = None,
                 clock=None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from runtime.clock import SYSTEM_CLOCK

        self.merge, self.gates, self.clock = merge, gates, clock or SYSTEM_CLOCK
        self.bad = BadMessages("HTTP gates")
        self.taken = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):   # noqa: N802 (the standard library's name)
                code, body = outer.handle(self.path, self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):   # requests are counted, not logged one by one
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-gates", daemon=True)
        self._thread.start()

    def handle(self, path: str, payload: bytes) -> tuple[int, dict]:
        gate = path[len("/gates/"):] if path.startswith("/gates/") else ""
        if not gate or (self.gates is not None and gate not in self.gates):
            self.bad.note("unknown device")
            return 404, {"error": f"{path}: expected /gates/<gate id of the store file>"}
        try:
            d = json.loads(payload.decode("utf-8"))
            if not isinstance(d, dict):
                raise ValueError("not an object")
            if "t" not in d:
                d = {**d, "t": self.clock.wall_s()}
            msg = decode("http", f"http/gates/{gate}", json.dumps(d).encode())
        except BadMessage as e:
            self.bad.note(e.kind)
            return 400, {"error": str(e)}
        except (UnicodeDecodeError, ValueError) as e:
            self.bad.note("not JSON")
            return 400, {"error": f"expected a JSON object with account_id and kind ({e})"}
        self.taken += 1
        self.merge.put(msg)
        return 202, {"taken": True, "t": msg.t}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the devices file --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Broker:
    host: str = "localhost"
    port: int = 1883
    prefix: str = "store"
    username_env: str | None = None     # the names of environment variables, never the secrets
    password_env: str | None = None


@dataclass(frozen=True)
class Devices:
    """``conf/devices/<store>.yaml``: where each of the store's devices is reached."""

    path: str
    broker: Broker
    cameras: dict[str, str]     # camera id → a stream URL (rtsp://, http://), a video file, or a USB index ("0")
    cells: str                  # "mqtt": every load cell of the store file on the broker, or "serial" (below)
    gates: str                  # "mqtt": every gate on the broker, or "http" (below)
    latency_s: dict = field(default_factory=dict)   # camera id → capture-to-delivery delay (runtime.cameras), where given
    serial: dict = field(default_factory=dict)      # port → {"baud": int, "cells": [cell id by channel]} (cells: serial)
    http_port: int | None = None                    # gates: http: the port POSTs come to


SECRET_WORDS = ("password", "passwd", "secret", "token")


def load_devices(path: str | Path, store: StoreSpec) -> Devices:
    """Read and check a devices file against the store file: one-line errors naming the file and
    the field; a secret written into the file is refused (give the variable's name: ``*_env``)."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(path, "<file>", "a mapping with broker, cameras, cells, gates", type(data).__name__)
    unknown = sorted(set(data) - {"store", "broker", "cameras", "cells", "gates"})
    if unknown:
        raise SpecError(path, unknown[0], "one of store, broker, cameras, cells, gates")
    if data.get("store") not in (None, store.name):
        raise SpecError(path, "store", f"the store these devices are for, {store.name!r}", data["store"])
    b = data.get("broker") or {}
    if not isinstance(b, dict):
        raise SpecError(path, "broker", "a mapping (host, port, prefix, username_env, password_env)", b)
    for k in b:
        if any(w in k.lower() for w in SECRET_WORDS) and not k.endswith("_env"):
            raise SpecError(path, f"broker.{k}", f"no secret in the file: the name of an environment variable ({k}_env)")
        if k not in Broker.__dataclass_fields__:
            raise SpecError(path, f"broker.{k}", "one of " + ", ".join(Broker.__dataclass_fields__))
    port = b.get("port", 1883)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise SpecError(path, "broker.port", "a port number 1-65535", port)
    broker = Broker(**{**b, "port": port})
    cams = data.get("cameras") or {}
    if not isinstance(cams, dict):
        raise SpecError(path, "cameras", "a mapping camera id → stream URL, file or USB index", cams)
    latency: dict[str, float] = {}
    urls: dict[str, str] = {}
    for cam, url in cams.items():
        if cam not in store.camera_by_id:
            raise SpecError(path, f"cameras.{cam}", f"a camera of the store file ({', '.join(store.camera_by_id)})")
        if isinstance(url, dict):    # {url: ..., latency_s: ...}
            extra = sorted(set(url) - {"url", "latency_s"})
            if extra:
                raise SpecError(path, f"cameras.{cam}.{extra[0]}", "url or latency_s")
            lat = url.get("latency_s", 0.0)
            if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not 0 <= lat < 10:
                raise SpecError(path, f"cameras.{cam}.latency_s", "seconds from capture to delivery, 0 to 10", lat)
            latency[cam] = float(lat)
            url = url.get("url")
        if isinstance(url, bool) or not isinstance(url, (str, int)) or str(url).strip() == "":
            raise SpecError(path, f"cameras.{cam}", "a stream URL (rtsp://, http://), a video file or a USB index", url)
        if urlsplit(str(url)).password is not None:
            raise SpecError(path, f"cameras.{cam}", "a URL without credentials (they come from the environment)")
        urls[cam] = str(url)
    cells, serial_ports = data.get("cells", "mqtt"), {}
    if isinstance(cells, dict) and set(cells) == {"serial"} and isinstance(cells["serial"], dict):
        for port, spec in cells["serial"].items():
            where = f"cells.serial.{port}"
            if not isinstance(spec, dict) or not isinstance(spec.get("cells"), list) or not spec["cells"]:
                raise SpecError(path, where, "a mapping with cells: [cell ids, by channel] and baud", spec)
            for c in spec["cells"]:
                if c not in store.load_cells:
                    raise SpecError(path, f"{where}.cells", "load cells of the store file", c)
            baud = spec.get("baud", 115200)
            if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
                raise SpecError(path, f"{where}.baud", "a baud rate", baud)
            serial_ports[str(port)] = {"baud": baud, "cells": [str(c) for c in spec["cells"]]}
        cells = "serial"
    elif cells != "mqtt":
        raise SpecError(path, "cells", "mqtt, or serial: {<port>: {cells: [...], baud: 115200}}", cells)
    gates, http_port = data.get("gates", "mqtt"), None
    if isinstance(gates, dict) and set(gates) == {"http"}:
        http_port = gates["http"].get("port", 8080) if isinstance(gates["http"], dict) else None
        if isinstance(http_port, bool) or not isinstance(http_port, int) or not 0 < http_port < 65536:
            raise SpecError(path, "gates.http.port", "a port number 1-65535", http_port)
        gates = "http"
    elif gates != "mqtt":
        raise SpecError(path, "gates", "mqtt, or http: {port: 8080}", gates)
    return Devices(str(path), broker, urls, cells, gates, latency, serial_ports, http_port)
