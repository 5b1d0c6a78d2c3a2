import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
