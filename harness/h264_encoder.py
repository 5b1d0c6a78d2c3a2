"""One camera's frames encoded as H.264 ahead of time, as a camera's own encoder chip would: GStreamer's
x264, run by :func:`harness.servers.encode_h264` with the system's Python (Debian's python3-gi, as
for the RTSP server), so that serving a recording costs the machine no encoding while it plays.

Standard input: one JSON line ``{"width": 640, "height": 480, "fps": 10, "key_int": 10}``, then
frames, each a little-endian ``uint32`` byte count and the BGR pixels row by row; a count of 0 ends
the stream. Standard output: one access unit per frame, in order, each a ``uint32`` byte count and
the Annex-B bytes (sequence and picture parameter sets before every key frame, so a viewer may join
at any key frame).
"""
import json
import struct
import sys
import threading

COUNT = struct.Struct("<I")


def main() -> int:
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    cfg = json.loads(stdin.readline())
    w, h, fps = int(cfg["width"]), int(cfg["height"]), float(cfg["fps"])
    key_int = int(cfg.get("key_int", max(1, round(fps))))
    pipeline = Gst.parse_launch(
        f"appsrc name=src format=time caps=video/x-raw,format=BGR,width={w},height={h},framerate=0/1 "
        f"! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={key_int} byte-stream=true "
        f"option-string=repeat-headers=1 "
        f"! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false")
    src, sink = pipeline.get_by_name("src"), pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    period = int(Gst.SECOND / fps)

    def feed() -> None:
        k = 0
        while True:
            head = stdin.read(COUNT.size)
            n = COUNT.unpack(head)[0] if len(head) == COUNT.size else 0
            data = stdin.read(n) if n else b""
            if not n or len(data) < n:
                break
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts, buf.duration = k * period, period
            src.emit("push-buffer", buf)
            k += 1
        src.emit("end-of-stream")

    threading.Thread(target=feed, daemon=True).start()
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:      # end of stream
            break
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if not ok:
            continue
        stdout.write(COUNT.pack(info.size))
        stdout.write(bytes(info.data))
        buf.unmap(info)
    stdout.flush()
    pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
