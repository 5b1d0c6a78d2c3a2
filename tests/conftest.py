import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
import os

os.environ.setdefault("YOLO_OFFLINE", "1")   # ultralytics: no update checks, no downloads
