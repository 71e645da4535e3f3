"""`detect --annotate` on a video: H.264 in MP4 (what browsers play), on the source's clock, with its sound."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from edgeemo.sources.spec import SourceError

log = logging.getLogger(__name__)
H264_ENCODERS = ("libx264", "libopenh264")  # in order of preference; both write what browsers play
COPIED_AUDIO = ("aac", "mp3", "opus", "alac")  # fit an MP4 as they are; any other sound is re-encoded to AAC


class AnnotatedVideo:
    """Frames written at their source pts (so `--every N` keeps the timing), then the source's sound.

    Every stream is added before the first frame is written (the MP4 header lists them).
    """

    def __init__(self, target: Path, fps: float, source: Path) -> None:
        import av

        encoder = next((name for name in H264_ENCODERS if name in av.codecs_available), None)
        if encoder is None:
            raise SourceError(f"{target}: this PyAV build has no H.264 encoder ({', '.join(H264_ENCODERS)})")
        self._av = av
        self.target = target
        self.rate = Fraction(fps or 30.0).limit_denominator(1001)
        self.container = av.open(str(target), "w")
        self.video = self.container.add_stream(encoder, rate=self.rate)
        self.video.pix_fmt = "yuv420p"
        self._last = -1
        self.source = av.open(str(source))
        self.sound = self.source.streams.audio[0] if self.source.streams.audio else None
        self.copy = self.sound is not None and self.sound.codec_context.name in COPIED_AUDIO
        if self.sound is None:
            self.sound_out = None
        elif self.copy:
            self.sound_out = self.container.add_stream_from_template(self.sound)
        else:
            self.sound_out = self.container.add_stream("aac", rate=self.sound.codec_context.sample_rate)

    def add(self, image: np.ndarray, pts: float) -> None:
        """One annotated BGR frame shown from `pts` (seconds from the video's start)."""
        if self._last < 0:  # H.264 in 4:2:0 needs an even width and height
            self.video.width, self.video.height = image.shape[1] & ~1, image.shape[0] & ~1
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame = frame.reformat(width=self.video.width, height=self.video.height, format="yuv420p")
        frame.pts = self._last = max(self._last + 1, round(pts * self.rate))
        self.container.mux(self.video.encode(frame))

    def finish(self) -> None:
        """Flush the video, add the source's sound (copied, or re-encoded to AAC), close both files."""
        try:
            self.container.mux(self.video.encode(None))
            if self.sound is not None:
                self._add_sound()
        except self._av.FFmpegError as exc:
            log.warning("%s: the sound could not be added (%s)", self.target, exc)
        finally:
            self.container.close()
            self.source.close()

    def _add_sound(self) -> None:
        video = self.source.streams.video[0] if self.source.streams.video else None
        start = float(video.start_time * video.time_base) if video and video.start_time is not None else 0.0
        if self.copy:
            shift = round(start / self.sound.time_base)
            for packet in self.source.demux(self.sound):
                if packet.dts is None:
                    continue
                packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                packet.stream = self.sound_out
                self.container.mux(packet)
            return
        for frame in self.source.decode(self.sound):
            frame.pts = None  # the encoder counts samples from the video's start
            self.container.mux(self.sound_out.encode(frame))
        self.container.mux(self.sound_out.encode(None))
