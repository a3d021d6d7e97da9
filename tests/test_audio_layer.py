"""The one audio layer (embeddings.audio): every format, every decoder, every bad file.

Ingest, uploads, stems and training all open audio through ``open_audio``; these
tests pin what that promises whichever decoder a format is given: blocks at the
asked rate and channel count, the mean as the one downmix, one policy for damaged
and cut-off files (keep what decodes, say why it stopped), no hang on a header that
lies about its length, the header limits and sample cleaning on both decoders, and
one list of extensions and one walk for ingest and training alike.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import chord, tone, write, write_float_wav, write_raw_wav
from embeddings.audio import (
    AUDIO_EXTENSIONS,
    BLOCK_FRAMES,
    DECODER_BY_EXTENSION,
    DECODERS,
    FFMPEG,
    FFMPEG_SOXR,
    LIBSNDFILE,
    LIBSNDFILE_OPUS_NATIVE,
    DecodeError,
    audio_files_in,
    audio_info,
    decode_all,
    decoder_for,
    iter_audio_files,
    open_audio,
    pan_filter,
    read_audio,
)

SR = 22050
SOURCE = 44100
SECONDS = 4.0
FREQS = (330.0, 1250.0)  # left, right: the mono mean holds both


def _write_ffmpeg(path: Path, audio: np.ndarray, rate: int, codec: str, container: str) -> Path:
    """(frames, channels) audio through PyAV's encoder (AAC in MP4 or ADTS)."""
    import av

    layout = {1: "mono", 2: "stereo"}[audio.shape[1]]
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        for start in range(0, len(audio), 1024):
            chunk = np.ascontiguousarray(audio[start : start + 1024].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _stereo(rate: int, seconds: float = SECONDS) -> np.ndarray:
    return np.stack([tone(FREQS[0], seconds, rate), tone(FREQS[1], seconds, rate)], axis=1)


# name -> (file extension, writer); every format the layer lists, in stereo.
WRITERS = {
    "wav": (".wav", lambda p: write(p, _stereo(SOURCE), SOURCE)),
    "wave": (".wave", lambda p: write(p, _stereo(SOURCE), SOURCE, format="WAV")),
    "flac": (".flac", lambda p: write(p, _stereo(SOURCE), SOURCE)),
    "aiff": (".aiff", lambda p: write(p, _stereo(SOURCE), SOURCE)),
    "au": (".au", lambda p: write(p, _stereo(SOURCE), SOURCE)),
    "vorbis": (".ogg", lambda p: write(p, _stereo(SOURCE), SOURCE, format="OGG")),
    "opus": (".opus", lambda p: write(p, _stereo(48000), 48000, format="OGG", subtype="OPUS")),
    "mp3": (".mp3", lambda p: write(p, _stereo(SOURCE), SOURCE)),
    "m4a": (".m4a", lambda p: _write_ffmpeg(p, _stereo(SOURCE), SOURCE, "aac", "mp4")),
    "mp4": (".mp4", lambda p: _write_ffmpeg(p, _stereo(SOURCE), SOURCE, "aac", "mp4")),
    "aac": (".aac", lambda p: _write_ffmpeg(p, _stereo(SOURCE), SOURCE, "aac", "adts")),
}
LIBSNDFILE_READS = {"wav", "wave", "flac", "aiff", "au", "vorbis", "opus", "mp3"}


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    return {name: writer(root / f"chord{ext}") for name, (ext, writer) in WRITERS.items()}


def _decoders(name: str) -> list[str]:
    """The decoders that can read format ``name``."""
    out = [FFMPEG, FFMPEG_SOXR]
    if name in LIBSNDFILE_READS:
        out.append(LIBSNDFILE)
    if name == "opus":
        out.append(LIBSNDFILE_OPUS_NATIVE)
    return out


def _peaks(audio: np.ndarray, rate: int = SR) -> list[int]:
    """The two strongest 1 Hz bins of the second second (both tones must be there)."""
    spectrum = np.abs(np.fft.rfft(audio[rate : 2 * rate]))
    return sorted(int(i) for i in np.argsort(spectrum)[-2:])


def _near(peaks: list[int]) -> bool:
    return all(abs(p - f) <= 2 for p, f in zip(peaks, FREQS, strict=True))


def test_every_listed_extension_has_a_written_format_here():
    assert {ext for ext, _ in WRITERS.values()} | {".oga", ".aif", ".aifc"} == AUDIO_EXTENSIONS


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_format_streams_mono_blocks_at_the_asked_rate(formats, name):
    stream = open_audio(formats[name], SR)
    chosen = decoder_for(formats[name])
    family = "libsndfile/" if chosen.startswith("libsndfile") else "ffmpeg/"
    assert stream.info.decoder.startswith(family), stream.info.decoder
    assert stream.info.channels == 2 and stream.sample_rate == SR and stream.channels == 1
    blocks = list(stream.blocks)
    assert len(blocks) > 1, "a whole file in one block is not streaming"
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert max(len(b) for b in blocks) <= BLOCK_FRAMES + 4096  # a read's worth, not the file
    audio = np.concatenate(blocks)
    assert abs(len(audio) / SR - SECONDS) < 0.1, len(audio) / SR
    assert _near(_peaks(audio)), _peaks(audio)
    assert stream.stopped_early is None and abs(stream.decoded_seconds - SECONDS) < 0.1


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_decoder_of_a_format_gives_the_same_sound(formats, name):
    """Whichever decoder a format is given, the same tones at the same level."""
    reference = None
    for decoder in _decoders(name):
        audio = np.concatenate(list(open_audio(formats[name], SR, decoder=decoder).blocks))
        assert abs(len(audio) / SR - SECONDS) < 0.1, (decoder, len(audio) / SR)
        assert _near(_peaks(audio)), (decoder, _peaks(audio))
        rms = float(np.sqrt(np.mean(audio[SR : 3 * SR] ** 2)))
        reference = reference or rms
        # the mean of both channels everywhere (FFmpeg's own mono would be 3 dB louder)
        assert abs(rms / reference - 1) < 0.05, (decoder, rms, reference)


@pytest.mark.parametrize("name", ["wav", "flac", "vorbis", "mp3", "m4a", "opus"])
def test_two_channels_at_the_files_own_rate(formats, name):
    """What stems read: the stereo image, at the track's rate, from either decoder."""
    for decoder in _decoders(name):
        stream = open_audio(formats[name], None, 2, decoder=decoder)
        audio = np.concatenate(list(stream.blocks))
        rate = stream.info.sample_rate
        assert stream.sample_rate == rate and audio.shape[1] == 2, decoder
        assert abs(len(audio) / rate - SECONDS) < 0.1, decoder
        # each channel keeps its own tone: the louder bin of each is its frequency
        for channel, freq in enumerate(FREQS):
            spectrum = np.abs(np.fft.rfft(audio[rate : 2 * rate, channel]))
            assert abs(int(np.argmax(spectrum)) - freq) <= 2, (decoder, channel)


def test_the_downmix_is_the_channel_mean_in_both_decoders(tmp_path):
    six = np.stack([tone(110 * (i + 1), 3, 48000) for i in range(6)], axis=1)
    path = write(tmp_path / "surround.wav", six, 48000)
    sndfile = np.concatenate(list(open_audio(path, SR, decoder=LIBSNDFILE).blocks))
    ffmpeg = np.concatenate(list(open_audio(path, SR, decoder=FFMPEG_SOXR).blocks))
    np.testing.assert_allclose(ffmpeg, sndfile, atol=1e-5)  # same samples, same soxr
    mean = six.mean(axis=1)
    expected = np.concatenate(list(open_audio(write(tmp_path / "m.wav", mean, 48000), SR).blocks))
    np.testing.assert_allclose(sndfile, expected, atol=1e-4)
    # and to two channels: Demucs' rule, first two kept
    stereo = np.concatenate(list(open_audio(path, None, 2, decoder=FFMPEG_SOXR).blocks))
    np.testing.assert_allclose(stereo, six[:, :2], atol=1e-4)


def test_the_pan_filter_follows_the_channel_rule():
    assert pan_filter(2, 2) is None
    assert pan_filter(2, 1) == "mono|c0=0.5*c0+0.5*c1"
    assert pan_filter(1, 2) == "stereo|c0=c0|c1=c0"
    assert pan_filter(6, 2) == "stereo|c0=c0|c1=c1"
    with pytest.raises(DecodeError, match="cannot make 3 channels out of 2"):
        pan_filter(2, 3)


def test_an_excerpt_is_exactly_that_span_of_the_whole_decode_with_ffmpeg(formats):
    for name in ("vorbis", "m4a"):
        whole = np.concatenate(list(open_audio(formats[name], SR, decoder=FFMPEG_SOXR).blocks))
        stream = open_audio(formats[name], SR, start_s=1.5, decoder=FFMPEG_SOXR)
        part = np.concatenate(list(stream.blocks))
        np.testing.assert_array_equal(part, whole[int(1.5 * SR) :], err_msg=name)


def test_a_non_utf8_name_decodes_to_the_same_samples(formats, tmp_path):
    """FFmpeg's filter arguments cannot carry such a name: Python feeds the same graph."""
    for name in ("m4a", "vorbis"):
        odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9 " + formats[name].name.encode())
        with open(odd, "wb") as fh:
            fh.write(formats[name].read_bytes())
        for decoder in (FFMPEG, FFMPEG_SOXR):
            plain = np.concatenate(list(open_audio(formats[name], SR, decoder=decoder).blocks))
            other = np.concatenate(
                list(open_audio(Path(os.fsdecode(odd)), SR, decoder=decoder).blocks)
            )
            np.testing.assert_array_equal(plain, other, err_msg=f"{name} {decoder}")


def test_a_name_with_filter_syntax_in_it_decodes(formats, tmp_path):
    path = tmp_path / "it's a:b=c, [d];e\\f.m4a"
    path.write_bytes(formats["m4a"].read_bytes())
    assert abs(len(decode_all(path, SR)) / SR - SECONDS) < 0.1


# -- damaged, cut off, lying ---------------------------------------------------------------


def _garbled(source: Path, target: Path, at: float = 0.5, size: int = 2000) -> Path:
    data = bytearray(source.read_bytes())
    start = int(len(data) * at)
    data[start : start + size] = np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def _pyav_seconds_before_error(path: Path) -> float:
    """How far FFmpeg decodes ``path``, frame by frame, before its first error."""
    import av

    with av.open(str(path)) as container:
        stream, samples = container.streams.audio[0], 0
        try:
            for frame in container.decode(stream):
                samples += frame.samples
        except av.FFmpegError:
            pass
        return samples / stream.codec_context.sample_rate


def test_a_damaged_file_keeps_what_decoded_and_says_why_it_stopped(tmp_path):
    long = chord([220.0, 330.0, 440.0], 10, SOURCE)
    sources = {
        "flac": write(tmp_path / "src.flac", long, SOURCE),
        "mp3": write(tmp_path / "src.mp3", long, SOURCE),
        "m4a": _write_ffmpeg(tmp_path / "src.m4a", long[:, None], SOURCE, "aac", "mp4"),
    }
    for name, source in sources.items():
        damaged = _garbled(source, tmp_path / f"damaged.{name}")
        for decoder in _decoders(name):
            stream = open_audio(damaged, SR, decoder=decoder)
            seconds = len(np.concatenate(list(stream.blocks))) / SR
            assert abs(stream.decoded_seconds - seconds) < 0.2, (name, decoder)
            if name == "flac" and decoder != LIBSNDFILE:  # FFmpeg resyncs past the damage
                assert stream.stopped_early is None and seconds > 9.0, (decoder, seconds)
                continue
            assert stream.stopped_early is not None, (name, decoder)
            assert stream.stopped_early.startswith("decoding stopped at "), stream.stopped_early
            assert 4.0 < seconds < 6.0, (name, decoder, seconds)  # all before the damage
            if decoder != LIBSNDFILE:
                # the graph loses none of the samples it held back when it stopped
                assert seconds > _pyav_seconds_before_error(damaged) - 0.1, (name, decoder)


def test_a_cut_off_file_decodes_as_far_as_it_goes(tmp_path):
    long = chord([220.0, 330.0, 440.0], 8, SOURCE)
    for ext in (".flac", ".mp3", ".ogg"):
        full = write(tmp_path / f"full{ext}", long, SOURCE)
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        for decoder in _decoders({".flac": "flac", ".mp3": "mp3", ".ogg": "vorbis"}[ext]):
            stream = open_audio(cut, SR, decoder=decoder)
            seconds = len(np.concatenate(list(stream.blocks))) / SR
            assert 1.0 < seconds < 5.0, (ext, decoder, seconds)


def _wav_claiming(path: Path, payload: bytes, data_size: int) -> Path:
    """A 16-bit mono 22,050 Hz WAV whose RIFF and data sizes say ``data_size``."""
    fmt = struct.pack("<HHIIHH", 1, 1, SR, SR * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", data_size) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", min(data_size + 36, 2**32 - 1)) + body)
    return path


def _bounded(call, seconds: float = 60.0):
    """``call()`` in a thread: a hang fails the test instead of blocking the suite."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 -- re-raised below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"decoding did not finish within {seconds:.0f} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_a_header_lying_about_its_length_does_not_hang(tmp_path):
    payload = (tone(440, 2.0) * 32767).astype("<i2").tobytes()
    liar = _wav_claiming(tmp_path / "liar.wav", payload, 0xFFFFFFF0)  # says 27 hours
    for decoder in (LIBSNDFILE, FFMPEG, FFMPEG_SOXR):

        def run(decoder=decoder):
            stream = open_audio(liar, SR, decoder=decoder)
            return stream, np.concatenate(list(stream.blocks))

        stream, audio = _bounded(run)
        assert abs(len(audio) / SR - 2.0) < 0.05, (decoder, len(audio) / SR)
        assert stream.stopped_early is None, decoder
    info = audio_info(liar)
    audio, _ = _bounded(lambda: read_audio(liar, SR))
    assert abs(len(audio) / SR - 2.0) < 0.05 and info.sample_rate == SR


def test_impossible_headers_are_refused_by_every_decoder_and_every_reader(tmp_path):
    from ingest.stems.audio import open_blocks

    samples = (tone(440, 2.0) * 32767).astype("<i2")
    one_hz = write_raw_wav(tmp_path / "1hz.wav", samples.tobytes(), 1, 1)
    many = np.repeat(samples[: SR // 2, None], 64, axis=1).tobytes()
    many = write_raw_wav(tmp_path / "64ch.wav", many, SR, 64)
    cases = ((one_hz, "declares a sample rate of 1 Hz"), (many, "declares 64 channels"))
    for path, reason in cases:
        for decoder in DECODERS:
            with pytest.raises(DecodeError, match=reason):
                open_audio(path, SR, decoder=decoder)
        for read in (audio_info, lambda p: read_audio(p, SR), lambda p: open_blocks(p, 2)):
            with pytest.raises(DecodeError, match=reason):
                read(path)


def test_the_stems_reader_refuses_a_1_hz_wav_without_growing(tmp_path):
    """Its own libsndfile code had no header check: 64k frames at 1 Hz were 9 GB at 44.1 kHz."""
    import tracemalloc

    from ingest.stems.audio import open_blocks

    pcm = (tone(440, 2.0) * 32767).astype("<i2").tobytes()
    one_hz = write_raw_wav(tmp_path / "1hz.wav", pcm, 1, 1)
    tracemalloc.start()
    with pytest.raises(DecodeError, match="only 4,000–384,000 Hz are read"):
        audio = open_blocks(one_hz, 2)
        for _ in audio.blocks:
            pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_the_stems_reader_refuses_a_file_damaged_part_way(tmp_path):
    from ingest.stems.audio import open_blocks

    source = write(tmp_path / "src.flac", chord([220.0, 330.0], 10, SOURCE), SOURCE)
    damaged = _garbled(source, tmp_path / "damaged.flac")
    audio = open_blocks(damaged, 2)
    with pytest.raises(DecodeError, match="decoding stopped at"):
        for _ in audio.blocks:
            pass


def test_samples_are_cleaned_before_resampling_by_both_decoders(tmp_path):
    audio = tone(440, 2, SOURCE)
    audio[1000:1010] = np.nan
    path = write_float_wav(tmp_path / "nan.wav", audio, SOURCE)
    for decoder in (LIBSNDFILE, FFMPEG_SOXR):
        stream = open_audio(path, SR, decoder=decoder)
        out = np.concatenate(list(stream.blocks))
        assert np.isfinite(out).all(), decoder
        assert stream.cleaning.nonfinite == 10, (decoder, stream.cleaning)


@pytest.mark.parametrize("ext", [".mp3", ".ogg", ".opus", ".flac", ".m4a", ".wav", ".aac"])
def test_unreadable_files_name_both_decoders_whichever_is_preferred(tmp_path, ext):
    empty = tmp_path / f"empty{ext}"
    empty.write_bytes(b"")
    text = tmp_path / f"notes{ext}"
    text.write_text("a shopping list, not music\n" * 40)
    for read in (lambda p: open_audio(p, SR), audio_info, lambda p: read_audio(p, SR)):
        with pytest.raises(DecodeError, match=r"empty file \(0 bytes\)"):
            read(empty)
        with pytest.raises(DecodeError, match=r"not a readable audio file \(libsndfile: .*ffmpeg"):
            read(text)


def test_a_file_its_extensions_decoder_cannot_read_goes_to_the_other(formats, tmp_path):
    disguised = tmp_path / "really_aac.flac"  # libsndfile's extension, FFmpeg's content
    disguised.write_bytes(formats["m4a"].read_bytes())
    stream = open_audio(disguised, SR)
    assert stream.info.decoder.startswith("ffmpeg/")
    assert abs(len(np.concatenate(list(stream.blocks))) / SR - SECONDS) < 0.1
    wav_as_m4a = tmp_path / "really_wav.m4a"
    wav_as_m4a.write_bytes(formats["wav"].read_bytes())
    assert abs(len(decode_all(wav_as_m4a, SR)) / SR - SECONDS) < 0.1


# -- one extension list, one walk ------------------------------------------------------------


def test_scan_and_training_share_the_extension_list_and_the_walk(tmp_path):
    import embeddings.training.dataset
    import embeddings.training.unlabelled
    import ingest.scan
    from embeddings.training.dataset import discover
    from embeddings.training.unlabelled import discover_audio

    assert ingest.scan.AUDIO_EXTENSIONS is embeddings.training.dataset.AUDIO_EXTENSIONS
    assert ingest.scan.AUDIO_EXTENSIONS is AUDIO_EXTENSIONS
    assert ingest.scan.iter_audio_files is iter_audio_files
    assert {".aac", ".mp4", ".m4a", ".wave", ".aifc", ".au"} <= AUDIO_EXTENSIONS
    assert set(DECODER_BY_EXTENSION) <= AUDIO_EXTENSIONS

    root = tmp_path / "dataset"
    for genre, names in {"a": ["x.aac", "y.MP4", "z.wave"], "b": ["u.m4a", "v.aifc"]}.items():
        for name in names:
            (root / genre).mkdir(parents=True, exist_ok=True)
            (root / genre / name).write_bytes(b"x")
    (root / "a" / ".hidden.mp3").write_bytes(b"x")
    (root / "a" / ".git").mkdir()
    (root / "a" / ".git" / "inside.mp3").write_bytes(b"x")
    (root / "a" / "notes.txt").write_text("not audio")
    indexed = {p.resolve() for p in iter_audio_files([root])}
    trained = {t.path.resolve() for t in discover(root).tracks}
    pretrained, _ = discover_audio([root])
    assert indexed == trained == set(pretrained)
    assert len(indexed) == 5
    assert audio_files_in(root / "a") == sorted(audio_files_in(root / "a"))


def test_libsndfile_blocks_are_read_without_seeking(formats, monkeypatch):
    """soundfile's read seeks around every block; on MP3 that seek glitched the audio."""
    import soundfile as sf

    def no_seek(self, *args, **kwargs):
        raise AssertionError("seeked while reading")

    monkeypatch.setattr(sf.SoundFile, "seek", no_seek)
    monkeypatch.setattr(sf.SoundFile, "tell", no_seek)
    for name in ("mp3", "flac", "wav"):
        audio = np.concatenate(list(open_audio(formats[name], SR, decoder=LIBSNDFILE).blocks))
        assert abs(len(audio) / SR - SECONDS) < 0.1, name
