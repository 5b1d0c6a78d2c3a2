"""The twin's cameras as RTSP streams: GStreamer's RTSP server, fed raw frames on standard input.

Run by :class:`harness.servers.RtspServer` with the system's Python (Debian's python3-gi and
gir1.2-gst-rtsp-server-1.0: GStreamer's bindings are not on PyPI); it imports nothing else, so it
needs no virtual environment. The first line of standard input is JSON:
``{"port": 8554, "cameras": [{"id": "cam_01", "width": 640, "height": 480, "fps": 10}, ...]}``;
each camera is served at ``rtsp://<host>:<port>/<id>`` as H.264 (x264, zero latency, a key frame
every second), one pipeline shared by every client. Then come frames, each a little-endian header
(``uint16`` camera index in that list, ``uint32`` byte count) and the BGR pixels, row by row. A
frame is stamped with the moment it arrives (the camera's capture), and dropped when nobody
watches the camera (a live camera's frames are not kept for later viewers). The server prints
``ready`` once it listens, and stops when standard input closes.
"""
import json
import struct
import sys
import threading


def main() -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    stdin = sys.stdin.buffer
    cfg = json.loads(stdin.readline())
    server = GstRtspServer.RTSPServer()
    server.set_service(str(cfg["port"]))
    mounts = server.get_mount_points()
    sources = {}     # camera index → the appsrc of its pipeline, while someone watches

    for i, cam in enumerate(cfg["cameras"]):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f"( appsrc name=src is-live=true do-timestamp=true format=time "
            f"caps=video/x-raw,format=BGR,width={cam['width']},height={cam['height']},framerate=0/1 "
            f"! videoconvert ! video/x-raw,format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast threads=1 bframes=0 key-int-max={max(1, round(cam['fps']))} "
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )")
        factory.set_shared(True)

        def configure(_factory, media, i=i):
            src = sources[i] = media.get_element().get_by_name("src")
            # a media torn down after a newer one was made keeps its hands off the newer one's source
            media.connect("unprepared", lambda _m: sources.get(i) is src and sources.pop(i))

        factory.connect("media-configure", configure)
        mounts.add_factory("/" + cam["id"], factory)
    if server.attach(None) == 0:
        print(f"error: RTSP port {cfg['port']} could not be bound", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()

    def feed() -> None:
        while True:
            head = stdin.read(6)
            if len(head) < 6:
                break
            i, n = struct.unpack("<HI", head)
            data = stdin.read(n)
            if len(data) < n:
                break
            src = sources.get(i)
            if src is not None:
                src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
        GLib.idle_add(loop.quit)

    threading.Thread(target=feed, daemon=True).start()
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
