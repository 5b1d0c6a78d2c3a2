"""The twin's cameras as RTSP streams: GStreamer's RTSP server, fed raw frames on standard input.

Run by :class:`harness.servers.RtspServer` with the system's Python (Debian's python3-gi and
gir1.2-gst-rtsp-server-1.0: GStreamer's bindings are not on PyPI); it imports nothing else, so it
needs no virtual environment. The first line of standard input is JSON:
``{"port": 8554, "cameras": [{"id": "cam_01", "width": 640, "height": 480, "fps": 10}, ...]}``;
each camera is served at ``rtsp://<host>:<port>/<id>`` as H.264 (x264, zero latency, a key frame
every second), one pipeline shared by every client. Then come frames, each a little-endian header
(``uint16`` camera index in that list, ``uint32`` byte count, ``float64`` the moment the frame was
captured, epoch seconds, or 0 for "now") and the BGR pixels, row by row; or, for a camera listed
with ``"codec": "h264"``, one H.264 access unit (Annex B) encoded ahead of time. A frame is stamped with
its capture, as a camera stamps its frames with its own clock: a frame the feeder hands over late
(a busy machine) goes out late but keeps its stamp, as a real camera's frame delayed on the network
does. Frames are dropped when nobody watches the camera (a live camera's frames are not kept for
later viewers). The server prints
``ready`` once it listens, and stops when standard input closes.
"""
import json
import struct
import sys
import threading
import time

HEADER = struct.Struct("<HId")     # camera index, byte count, capture time (epoch s, 0: now)


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
        if cam.get("codec", "raw") == "h264":      # access units encoded ahead of time
            launch = ("appsrc name=src is-live=true do-timestamp=false format=time "
                      "caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ")
        else:
            launch = (f"appsrc name=src is-live=true do-timestamp=false format=time "
                      f"caps=video/x-raw,format=BGR,width={cam['width']},height={cam['height']},framerate=0/1 "
                      f"! videoconvert ! video/x-raw,format=I420 "
                      f"! x264enc tune=zerolatency speed-preset=ultrafast threads=1 bframes=0 "
                      f"key-int-max={max(1, round(cam['fps']))} ")
        factory.set_launch(f"( {launch}! rtph264pay name=pay0 pt=96 config-interval=1 )")
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

    last = {}        # an appsrc → the stamp it was last given

    def feed() -> None:
        while True:
            head = stdin.read(HEADER.size)
            if len(head) < HEADER.size:
                break
            i, n, at = HEADER.unpack(head)
            data = stdin.read(n)
            if len(data) < n:
                break
            src = sources.get(i)
            if src is not None:
                now = src.get_current_running_time()
                if now == Gst.CLOCK_TIME_NONE:      # not playing yet
                    continue
                late = max(0, int((time.time() - at) * Gst.SECOND)) if at else 0
                pts = max(now - late, last.get(src, -1) + 1, 0)    # running time goes one way
                last[src] = pts
                buf = Gst.Buffer.new_wrapped(data)
                buf.pts = pts
                src.emit("push-buffer", buf)
        GLib.idle_add(loop.quit)

    threading.Thread(target=feed, daemon=True).start()
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
