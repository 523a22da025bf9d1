"""A real RTSP server for the tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0, through python3-gi), serving a live test
camera — videotestsrc through x264enc (1 key frame a second), with AAC
audio — at rtsp://127.0.0.1:PORT/cam behind digest authentication.

The media is shared: every client gets the same access units (a test
records them with ffmpeg beside the client under test).

Usage: /usr/bin/python3 server.py USER PASSWORD [PORT]
Prints "PORT <n>" once listening (PORT 0 or absent: any free port), then
serves until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

user, password = sys.argv[1:3]
port = sys.argv[3] if len(sys.argv) > 3 else "0"
Gst.init(None)

server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)

auth = GstRtspServer.RTSPAuth()
auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
token = GstRtspServer.RTSPToken()
token.set_string("media.factory.role", user)
auth.add_digest(user, password, token)
server.set_auth(auth)

factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=25/1 "
    "! x264enc tune=zerolatency key-int-max=25 bframes=0 "
    "! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 "
    "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=48000,channels=1 "
    "! audioconvert ! avenc_aac ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
)
factory.set_shared(True)
permissions = GstRtspServer.RTSPPermissions()
permissions.add_permission_for_role(user, "media.factory.access", True)
permissions.add_permission_for_role(user, "media.factory.construct", True)
factory.set_permissions(permissions)
server.get_mount_points().add_factory("/cam", factory)

server.attach(None)
print(f"PORT {server.get_bound_port()}", flush=True)
GLib.MainLoop().run()
