"""Audio capture: a source's sound as 16 kHz mono float32 samples in a ring buffer, stamped with pts.

Files, the audio track of videos and streams are decoded with PyAV (FFmpeg), on the same clock as
the video frames of that source: pts are seconds from the start of the video stream, as OpenCV
reports frame pts, so a voice window and the faces seen during it line up. Microphones are read with
pyaudio (optional: without it, or without a microphone, the source runs vision-only and says so
once). Live audio is stamped with the same monotonic clock as live cameras.

The ring buffer sits between capture and voice analysis. When analysis falls behind, capture
overwrites the oldest unread samples and counts them as an overrun; it never blocks a live source
and never fails. In lossless mode (``--once`` on files) capture waits instead, so nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgeemo.sources.media import media_duration, open_media
from edgeemo.sources.reader import live_pts
from edgeemo.sources.spec import SourceError, parse_source
from edgeemo.config.redact import redact
from edgeemo.config.schema import MicrophoneConfig, SourceConfig
from edgeemo.core.metrics import Metrics
from edgeemo.core.supervisor import Backoff, Supervised

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000
Chunk = tuple[np.ndarray, float]   # float32 mono samples at SAMPLE_RATE, pts of the first one


class AudioUnavailable(Exception):
    """The source has no sound to analyse (no audio track, no pyaudio, no microphone)."""


# ------------------------------------------------------------------------------------------ readers

class FileAudioReader:
    """Decodes the first audio stream of a file or stream URL with PyAV, resampled to 16 kHz mono.

    A live stream's sound is stamped on the live clock when it arrives, as its video frames are.
    `block` samples make a chunk (the last may be shorter): the resampler collects them, so that
    the daemon hands sound over as a microphone does, one block at a time, and pays the per-chunk
    work (a copy, a ring write, counters) once per block rather than per AAC frame (21 ms).
    None: a chunk per decoded frame.
    """

    def __init__(self, target: str, live: bool = False, timeout_s: float = 10.0, block: int | None = None) -> None:
        import av

        self.live = live
        self._container = open_media(target, timeout_s, "audio")
        if not self._container.streams.audio:
            self._container.close()
            raise AudioUnavailable(f"{redact(target)} has no audio track")
        self.target = target
        self._stream = self._container.streams.audio[0]
        self._stream.thread_type = "SLICE"
        videos = self._container.streams.video
        # OpenCV's frame pts count from the video stream's start; put the sound on that clock.
        clock = videos[0] if videos else self._stream
        self._offset = float(clock.start_time * clock.time_base) if clock.start_time is not None else 0.0
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE, frame_size=block)
        self._av = av
        self.lost_samples = 0  # a file loses nothing

    def chunks(self) -> Iterator[Chunk]:
        """Chunks in order until the end; a corrupt or truncated stream ends early with a warning."""
        done = 0  # samples delivered: the fallback clock when the decoder gives no pts
        try:
            for out in self._resampled():
                samples = out.to_ndarray().reshape(-1)
                yield samples, self._pts(out, done)
                done += len(samples)
        except self._av.FFmpegError as exc:
            log.warning("audio of %s stops at %.2f s: %s", redact(self.target), done / SAMPLE_RATE, redact(str(exc)))

    def _resampled(self) -> Iterator:
        for frame in self._container.decode(self._stream):
            yield from self._resampler.resample(frame)
        yield from self._resampler.resample(None)  # the resampler's tail

    def _pts(self, frame: object, done: int) -> float:
        if self.live:
            return live_pts() - frame.samples / SAMPLE_RATE
        seconds = getattr(frame, "time", None)
        return (seconds - self._offset) if seconds is not None else done / SAMPLE_RATE

    def close(self) -> None:
        self._container.close()


class DeviceLost(SourceError):
    """The microphone went away while it was read (unplugged, driver error): reopen it."""


class MicReader:
    """A microphone through pyaudio, converted to 16 kHz mono; overflows of its buffer are counted.

    Without pyaudio there is no microphone at all (AudioUnavailable). A device that is missing or
    fails to open is a SourceError, so the capture keeps looking for it: one plugged in later is used.
    A read that fails with anything but an overflow means the device is gone (DeviceLost).
    """

    def __init__(self, cfg: MicrophoneConfig) -> None:
        try:
            import pyaudio
        except ImportError:
            raise AudioUnavailable("pyaudio is not installed (pip install 'edgeemo[mic]')") from None
        self.cfg = cfg
        self._name = str(cfg.device) if cfg.device is not None else "(default)"
        self._pa = pyaudio.PyAudio()
        self._paInt16 = pyaudio.paInt16
        self._overflowed = pyaudio.paInputOverflowed
        try:
            index = find_input_device(self._pa, cfg.device)
            self._stream = self._pa.open(format=pyaudio.paInt16, channels=cfg.channels, rate=cfg.sample_rate,
                                         input=True, input_device_index=index,
                                         frames_per_buffer=cfg.buffer_frames)
        except (OSError, ValueError) as exc:
            self._pa.terminate()
            raise SourceError(f"microphone {self._name}: {exc}") from None
        self.lost_samples = 0  # to buffers that overflowed since the capture thread last looked

    def chunks(self) -> Iterator[Chunk]:
        while True:
            pts = live_pts()
            try:
                data = self._stream.read(self.cfg.buffer_frames, exception_on_overflow=True)
            except OSError as exc:
                if exc.errno != self._overflowed:
                    raise DeviceLost(f"microphone {self._name} lost: {exc}") from None
                # the input overflowed: one buffer was lost, the stream goes on
                self.lost_samples += self.cfg.buffer_frames * SAMPLE_RATE // self.cfg.sample_rate
                continue
            pcm = np.frombuffer(data, np.int16).reshape(-1, self.cfg.channels)
            samples = pcm.mean(axis=1, dtype=np.float32) / 32768.0
            yield to_16k(samples, self.cfg.sample_rate), pts - len(pcm) / self.cfg.sample_rate

    def close(self) -> None:
        try:
            self._stream.close()
        except OSError:  # a lost device may refuse to close its stream
            pass
        self._pa.terminate()


def input_devices(pa: object) -> list[tuple[int, str]]:
    """(index, name) of every device PortAudio can record from."""
    found = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info.get("maxInputChannels", 0) > 0:
            found.append((i, info["name"]))
    return found


def find_input_device(pa: object, device: str | int | None) -> int | None:
    """Device index from an index or part of a name (case-insensitive); None: the default input."""
    if device is None or isinstance(device, int):
        return device
    devices = input_devices(pa)
    for i, name in devices:
        if device.lower() in name.lower():
            return i
    raise ValueError(f"no input device matches {device!r}; input devices: {[n for _, n in devices] or 'none'}")


def describe_inputs(cfg: MicrophoneConfig) -> str:
    """The input devices PortAudio sees, and which one ``microphone.device`` picks (for `edgeemo check`)."""
    try:
        import pyaudio
    except ImportError:
        raise AudioUnavailable("pyaudio is not installed (pip install 'edgeemo[mic]')") from None
    pa = pyaudio.PyAudio()
    try:
        devices = input_devices(pa)
        listed = ", ".join(f"{i} {name!r}" for i, name in devices) or "none"
        index = find_input_device(pa, cfg.device)
        if index is None:
            try:
                index = int(pa.get_default_input_device_info()["index"])
            except OSError:
                raise ValueError(f"no default input device; input devices: {listed}") from None
        name = pa.get_device_info_by_index(index)["name"]
    except ValueError as exc:
        raise SourceError(f"microphone.device {cfg.device!r}: {exc}") from None
    finally:
        pa.terminate()
    setting = "(default)" if cfg.device is None else repr(cfg.device)
    return f"input devices: {listed}; microphone.device {setting} picks {index} {name!r}"


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return samples
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(SAMPLE_RATE, rate)
    return resample_poly(samples, SAMPLE_RATE // g, rate // g).astype(np.float32)


def has_sound(path: str) -> bool:
    """Whether a media file has an audio track; one that cannot be opened is left to its reader to report."""
    try:
        with open_media(path, None, "audio") as container:
            return bool(container.streams.audio)
    except SourceError:
        return True


def audio_target(cfg: SourceConfig) -> str | None:
    """What to open for the sound of a source: a file/URL, "mic", or None (audio off)."""
    if cfg.audio == "off":
        return None
    if cfg.audio != "auto":
        return cfg.audio
    spec = parse_source(cfg.url)
    if spec.kind in ("video", "stream", "audio"):
        return str(spec.target)
    return None  # cameras and images have no sound of their own: set audio: mic


def is_file(target: str) -> bool:
    """Whether an audio target (audio_target) names a local file: neither "mic" nor a URL."""
    return target != "mic" and "://" not in target


def check_audio_target(source: SourceConfig, target: str) -> None:
    """A named audio file that is not there stops start-up, like a missing video file."""
    if is_file(target) and not Path(target).is_file():
        raise SourceError(f"sources.{source.name}.audio: {redact(target)!r}: no such file")


def open_reader(target: str, mic: MicrophoneConfig, timeout_s: float = 10.0) -> FileAudioReader | MicReader:
    if target == "mic":
        return MicReader(mic)
    if is_file(target) and not Path(target).is_file():
        raise SourceError(f"audio {redact(target)!r}: no such file")
    block = round(mic.buffer_frames / mic.sample_rate * SAMPLE_RATE)  # a microphone's block, at 16 kHz
    return FileAudioReader(target, live=not is_file(target), timeout_s=timeout_s, block=block)


# -------------------------------------------------------------------------------------- ring buffer

class AudioRing:
    """A fixed float32 ring of the newest samples, addressed by absolute sample index from 0.

    One writer (capture) and one reader (voice analysis). The reader says which samples it still
    needs with :meth:`release`; a writer that would overwrite those either waits (lossless) or
    overwrites the oldest and counts them in ``overrun_samples``.
    """

    def __init__(self, seconds: float, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self.capacity = int(seconds * sample_rate)
        self._buf = np.zeros(self.capacity, np.float32)
        self.written = 0                # absolute index of the next sample to be written
        self._needed_from = 0           # the reader still needs samples from here on
        self._anchor = (0, 0.0)         # (index, pts) of the latest write: pts of any index from it
        self._anchor_captured = 0.0     # monotonic time of the latest write
        self.overrun_samples = 0
        self.closed = False
        self._cond = threading.Condition()

    def write(self, samples: np.ndarray, pts: float, lossless: bool = False,
              stop: threading.Event | None = None) -> int:
        """Append a chunk; returns the samples lost to an overrun by this write."""
        n = len(samples)
        with self._cond:
            if lossless:
                while self.written + n - self._needed_from > self.capacity and not (stop and stop.is_set()):
                    self._cond.wait(0.1)
            lost = max(0, self.written + n - self._needed_from - self.capacity)
            if lost:
                self._needed_from += lost
                self.overrun_samples += lost
            if n > self.capacity:  # only the newest capacity samples can be kept
                samples, pts = samples[-self.capacity:], pts + (n - self.capacity) / self.sample_rate
                self.written += n - self.capacity
                n = self.capacity
            start = self.written % self.capacity
            first = min(n, self.capacity - start)
            self._buf[start:start + first] = samples[:first]
            self._buf[:n - first] = samples[first:]
            self._anchor = (self.written, pts)
            self._anchor_captured = time.monotonic()
            self.written += n
            self._cond.notify_all()
            return lost

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_for(self, index: int, timeout: float) -> bool:
        """True once samples up to ``index`` (exclusive) are written; False on timeout or close."""
        with self._cond:
            return self._cond.wait_for(lambda: self.written >= index or self.closed, timeout) and \
                self.written >= index

    def read(self, start: int, end: int, out: np.ndarray) -> np.ndarray:
        """Samples [start, end) into ``out[:end-start]``; any part already overwritten comes out as zeros."""
        with self._cond:
            view = out[:end - start]
            lo = max(start, self.written - self.capacity)
            view[:max(0, lo - start)] = 0.0
            if lo < end:
                k = lo % self.capacity
                m = min(end - lo, self.capacity - k)
                view[lo - start:lo - start + m] = self._buf[k:k + m]
                view[lo - start + m:] = self._buf[:end - lo - m]  # the part that wrapped round
            return view

    def release(self, index: int) -> None:
        """The reader no longer needs samples before ``index``."""
        with self._cond:
            self._needed_from = max(self._needed_from, index)
            self._cond.notify_all()

    def pts_at(self, index: int) -> float:
        with self._cond:
            anchor_index, anchor_pts = self._anchor
            return anchor_pts + (index - anchor_index) / self.sample_rate

    def captured_at(self) -> float:
        with self._cond:
            return self._anchor_captured


# ---------------------------------------------------------------------------------------- the thread

class AudioCapture(Supervised):
    """Reads one source's sound into its ring until the sound ends or the daemon stops.

    Files are paced at their own rate unless lossless, like their video. A live source (microphone,
    stream) that is missing, lost or stalled is reopened with the source's back-off and counted in
    `edgeemo_audio_reopens_total`: a microphone plugged in after start-up is picked up. A source
    without sound (no audio track, no pyaudio) ends the thread after one message.
    """

    where = "audio"

    def __init__(self, cfg: SourceConfig, target: str, mic: MicrophoneConfig, ring: AudioRing,
                 stop: threading.Event, metrics: Metrics | None, lossless: bool = False) -> None:
        super().__init__(f"audio-{cfg.name}", stop, metrics)
        self.cfg, self.target, self.mic, self.ring = cfg, target, mic, ring
        self.live = not is_file(target)
        self.give_up_after = None if self.live else 1
        self.lossless = lossless and not self.live
        # the sound of a looping video (the sample, played) loops with it
        self.loop = not lossless and cfg.audio == "auto" and parse_source(cfg.url).loop
        self.opened = 0  # how often the sound was opened

    def work(self) -> None:
        try:
            if self.live:
                self._run_live()
            elif self.loop:
                self._run_looped()
            else:
                self._read(open_reader(self.target, self.mic))
        except AudioUnavailable as exc:
            log.warning("source %s: no voice analysis (%s); faces only", self.cfg.name, exc)

    def finished(self) -> None:
        self.ring.close()

    def _run_live(self) -> None:
        backoff = Backoff(self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s)
        missing = 0
        while not self.stop.is_set():
            try:
                reader = open_reader(self.target, self.mic, self.cfg.stall_timeout_s)
            except SourceError as exc:
                missing += 1  # said once at warning level; a microphone may stay away for days
                self._reopen_after(backoff, str(exc), logging.WARNING if missing == 1 else logging.DEBUG)
                continue
            if missing:
                log.info("audio of source %s is back", self.cfg.name)
            missing = 0
            backoff.ran(self._read(reader))
            self._reopen_after(backoff, f"audio of source {self.cfg.name} stopped", logging.WARNING)

    def _run_looped(self) -> None:
        """The file again and again, on the clock its video keeps (capture.Capture._run_file)."""
        started, offset, period = time.monotonic(), 0.0, media_duration(self.target)
        while not self.stop.is_set() and period > 0:
            self._read(open_reader(self.target, self.mic), started, offset)
            offset += period

    def _reopen_after(self, backoff: Backoff, why: str, level: int) -> None:
        if self.stop.is_set():
            return
        wait = backoff.wait_s()
        log.log(level, "%s; reopening in %.1f s", why, wait)
        if self.metrics:
            self.metrics.audio_reopens.labels(source=self.cfg.name).inc()
        self.stop.wait(wait)

    def _read(self, reader: FileAudioReader | MicReader, started: float | None = None, offset: float = 0.0) -> float:
        """Chunks into the ring until the sound ends, fails or the daemon stops; seconds it flowed.

        A file is paced from `started` with its pts shifted by `offset` (both kept across a loop),
        and handed over as a microphone delivers: in blocks of `microphone.buffer_frames`, a block
        once its last sample is due. One wake-up per block, not one per decoded frame (AAC's are
        21 ms long), which at this rate is most of what reading the sound costs.
        """
        opened = time.monotonic()
        started = opened if started is None else started
        block_s = self.mic.buffer_frames / self.mic.sample_rate
        self.opened += 1
        try:
            for samples, pts in reader.chunks():
                if self.stop.is_set():
                    break
                pts += offset
                if not self.live and not self.lossless:
                    delay = started + pts - time.monotonic()
                    if delay > 0 and self.stop.wait(delay + block_s):
                        break
                lost = self.ring.write(samples, pts, self.lossless, self.stop)
                self._count(len(samples), lost, reader)
        except DeviceLost as exc:
            log.warning("source %s: %s", self.cfg.name, exc)
        finally:
            reader.close()
        return time.monotonic() - opened

    def _count(self, samples: int, lost: int, reader: FileAudioReader | MicReader) -> None:
        if self.metrics is None:
            return
        self.metrics.audio_samples.labels(source=self.cfg.name).inc(samples)
        if lost:
            self.metrics.audio_dropped.labels(source=self.cfg.name, reason="backlog").inc(lost)
        device_lost, reader.lost_samples = reader.lost_samples, 0
        if device_lost:
            self.metrics.audio_dropped.labels(source=self.cfg.name, reason="device").inc(device_lost)
