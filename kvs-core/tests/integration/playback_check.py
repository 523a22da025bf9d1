"""Checks the local endpoint's HLS playlists and DASH manifests as a player
and a validator would, with tools no one here wrote: boto3 opens the
sessions, the `m3u8` package parses the playlists, PyAV (FFmpeg) reads the
segments, lxml checks the manifests against the MPD schema.

The rules are RFC 8216's (HLS) as Apple's mediastreamvalidator documents
them, and ISO/IEC 23009-1's (DASH):
- the playlist starts with #EXTM3U; every EXTINF, rounded, is at most
  EXT-X-TARGETDURATION (RFC 8216 4.3.3.1); EXT-X-MAP needs version 6 or
  later (section 7); a VOD playlist ends with EXT-X-ENDLIST;
- every variant has BANDWIDTH, CODECS naming each track, RESOLUTION;
- every segment starts with a key frame (EXT-X-INDEPENDENT-SEGMENTS) and
  lasts its EXTINF (within a frame);
- the timestamps run on without a jump except where EXT-X-DISCONTINUITY
  says so (ON_DISCONTINUITY), and EXT-X-PROGRAM-DATE-TIME gives each
  segment's start;
- the MPD validates against the schema, and each S element's `t` (explicit
  or carried on) is where its segment's media starts.

Usage: python playback_check.py URL STREAM START END [MPD_XSD]
(START and END in epoch seconds). Prints a JSON summary; `errors` lists
every rule broken.
"""

import datetime
import io
import json
import sys
import urllib.request

import av
import boto3
import m3u8

url, stream, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
xsd = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
am = boto3.client(
    "kinesis-video-archived-media",
    endpoint_url=url,
    region_name="us-east-1",
    aws_access_key_id="a",
    aws_secret_access_key="b",
)
errors = []
summary = {}


def fetch(u):
    with urllib.request.urlopen(u, timeout=30) as r:
        return r.headers.get("Content-Type"), r.read()


def media_times(data):
    """(first video pts, video end, first packet is a key frame) in seconds
    of a segment (init + media, or a TS segment), read by FFmpeg."""
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        pts = []
        first_key = None
        for p in c.demux(v):
            if p.pts is None:
                continue
            if first_key is None:
                first_key = p.is_keyframe
            pts.append(float(p.pts * v.time_base))
    pts.sort()
    step = (pts[-1] - pts[0]) / (len(pts) - 1) if len(pts) > 1 else 0
    return pts[0], pts[-1] + step, bool(first_key)


def selector(kind):
    return {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {
            "StartTimestamp": datetime.datetime.fromtimestamp(start, datetime.timezone.utc),
            "EndTimestamp": datetime.datetime.fromtimestamp(end, datetime.timezone.utc),
        },
    }


def check_hls(name, **members):
    base = am.get_hls_streaming_session_url(StreamName=stream, **members)["HLSStreamingSessionURL"]
    _, master_text = fetch(base)
    master = m3u8.loads(master_text.decode(), uri=base)
    if not master_text.startswith(b"#EXTM3U"):
        errors.append(f"{name}: the master playlist does not start with #EXTM3U")
    for pl in master.playlists:
        info = pl.stream_info
        if not info.bandwidth:
            errors.append(f"{name}: a variant without BANDWIDTH")
        if not info.codecs or len(info.codecs.split(",")) < 2:
            errors.append(f"{name}: CODECS {info.codecs!r} does not name video and audio")
        if not info.resolution:
            errors.append(f"{name}: a variant without RESOLUTION")
    media_url = base.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist")
    _, text = fetch(media_url)
    text = text.decode()
    pl = m3u8.loads(text, uri=media_url)
    if not text.startswith("#EXTM3U"):
        errors.append(f"{name}: the media playlist does not start with #EXTM3U")
    target = pl.target_duration
    for seg in pl.segments:
        if round(seg.duration) > target:
            errors.append(f"{name}: EXTINF {seg.duration} over the target duration {target}")
    init = None
    if pl.segment_map:
        if int(pl.version or 1) < 6:
            errors.append(f"{name}: EXT-X-MAP in a version {pl.version} playlist")
        _, init = fetch(pl.segment_map[0].absolute_uri)
    vod = pl.playlist_type == "vod"
    if vod != pl.is_endlist:
        errors.append(f"{name}: PLAYLIST-TYPE {pl.playlist_type} with is_endlist {pl.is_endlist}")
    prev = None
    marks = []
    for i, seg in enumerate(pl.segments):
        ctype, data = fetch(seg.absolute_uri)
        first, last, key = media_times((init or b"") + data)
        if not key:
            errors.append(f"{name}: segment {i} does not start with a key frame")
        if abs((last - first) - seg.duration) > 0.041:
            errors.append(f"{name}: segment {i} lasts {last - first:.3f} s, EXTINF {seg.duration}")
        if seg.discontinuity:
            marks.append(i)
        if prev is not None and not seg.discontinuity and members.get("DiscontinuityMode") == "ON_DISCONTINUITY":
            if abs(first - prev) > 0.05:
                errors.append(f"{name}: segment {i} jumps {first - prev:+.3f} s without EXT-X-DISCONTINUITY")
        if seg.program_date_time is not None and i > 0 and pl.segments[0].program_date_time is not None:
            wall = (seg.program_date_time - pl.segments[0].program_date_time).total_seconds()
            if abs(wall - (first - first0)) > 0.002:
                errors.append(f"{name}: segment {i} PROGRAM-DATE-TIME is {wall} s in, its media {first - first0} s")
        if i == 0:
            first0 = first
        prev = last
    summary[name] = {
        "segments": len(pl.segments),
        "discontinuities": marks,
        "program_date_times": sum(1 for s in pl.segments if s.program_date_time is not None),
        "version": pl.version,
    }


def mpd_schema(etree):
    """The MPD schema at `xsd`, its imports (xlink.xsd, xml.xsd) taken from
    the same folder, never from the network."""
    import os

    folder = os.path.dirname(os.path.abspath(xsd))

    class Beside(etree.Resolver):
        def resolve(self, url, public_id, context):
            local = os.path.join(folder, url.rsplit("/", 1)[-1])
            return self.resolve_filename(local, context) if os.path.exists(local) else None

    parser = etree.XMLParser(load_dtd=True, no_network=True)
    parser.resolvers.add(Beside())
    return etree.XMLSchema(etree.parse(xsd, parser))


def check_dash(name, **members):
    from lxml import etree

    base = am.get_dash_streaming_session_url(StreamName=stream, **members)["DASHStreamingSessionURL"]
    _, text = fetch(base)
    doc = etree.fromstring(text)
    if xsd:
        schema = mpd_schema(etree)
        if not schema.validate(doc):
            errors.append(f"{name}: the MPD does not validate: {schema.error_log}")
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    sl = doc.find(".//d:SegmentList", ns)
    scale = int(sl.get("timescale", "1"))
    init = fetch(base.rsplit("/", 1)[0] + "/" + sl.find("d:Initialization", ns).get("sourceURL"))[1]
    t = 0
    starts = []
    for s in sl.findall("d:SegmentTimeline/d:S", ns):
        t = int(s.get("t", t))
        starts.append((t, int(s.get("d"))))
        t += int(s.get("d"))
    urls = [u.get("media") for u in sl.findall("d:SegmentURL", ns)]
    if len(urls) != len(starts):
        errors.append(f"{name}: {len(urls)} SegmentURLs for {len(starts)} S elements")
    for i, (u, (t, d)) in enumerate(zip(urls, starts)):
        _, data = fetch(base.rsplit("/", 1)[0] + "/" + u)
        first, last, _ = media_times(init + data)
        if abs(first - t / scale) > 0.002:
            errors.append(f"{name}: segment {i} starts at {first:.3f} s, its S at {t / scale:.3f} s")
        if abs((last - first) - d / scale) > 0.041:
            errors.append(f"{name}: segment {i} lasts {last - first:.3f} s, its S {d / scale:.3f} s")
    summary[name] = {"segments": len(starts), "validated": bool(xsd)}


sel = selector("HLS")
for mode in ["NEVER", "ALWAYS", "ON_DISCONTINUITY"]:
    check_hls(f"hls-{mode}", PlaybackMode="ON_DEMAND", HLSFragmentSelector=sel, DiscontinuityMode=mode,
              DisplayFragmentTimestamp="ALWAYS")
check_hls("hls-ts", PlaybackMode="ON_DEMAND", HLSFragmentSelector=sel, ContainerFormat="MPEG_TS",
          DiscontinuityMode="ON_DISCONTINUITY")
check_hls("hls-live", PlaybackMode="LIVE", MaxMediaPlaylistFragmentResults=3)
check_dash("dash", PlaybackMode="ON_DEMAND", DASHFragmentSelector=sel, DisplayFragmentTimestamp="ALWAYS",
           DisplayFragmentNumber="ALWAYS")
check_dash("dash-live", PlaybackMode="LIVE")
print(json.dumps({"summary": summary, "errors": errors}))
