"""The compiler: checks against Essentia's registry, wiring, cycles, merging, stages."""

from __future__ import annotations

import pytest

from runner.compile import check_instantiation, compile_profile
from runner.errors import ProfileError
from runner.profile import load_profile

HEAD = """
name: t
stats:
  lowlevel: [mean, var]
graph:
  fc: {algorithm: FrameCutter, params: {frameSize: 2048, hopSize: 1024}, inputs: {signal: audio.signal}}
  win: {algorithm: Windowing, params: {type: hann}, inputs: {frame: fc.frame}}
  spec: {algorithm: Spectrum, inputs: {frame: win.frame}}
"""


def compile_text(write_profile, text: str):
    path = write_profile(text)
    return path, compile_profile(load_profile(str(path)))


def compile_error(write_profile, text: str) -> tuple[str, str]:
    path = write_profile(text)
    with pytest.raises(ProfileError) as exc:
        plan = compile_profile(load_profile(str(path)))
        check_instantiation(plan)
    return str(path), str(exc.value)


def test_unknown_algorithm_suggests_close_match(write_profile):
    path, text = compile_error(write_profile, HEAD + """
  c: {algorithm: Centriod, inputs: {array: spec.spectrum}}
descriptors:
  lowlevel.c: c.centroid
""")
    assert text == (f"{path}:9: graph.c.algorithm: unknown Essentia streaming algorithm "
                    "'Centriod' (did you mean 'Centroid'?)")


def test_parameter_typo_suggests(write_profile):
    path, text = compile_error(write_profile, HEAD.replace("hopSize: 1024", "hopsize: 1024")
                               + "descriptors:\n  lowlevel.s: spec.spectrum\n")
    assert text == (f"{path}:5: graph.fc.params.hopsize: FrameCutter has no parameter "
                    "'hopsize' (did you mean 'hopSize'?)")


def test_parameter_type_and_range(write_profile):
    path, text = compile_error(write_profile, HEAD.replace("frameSize: 2048", "frameSize: big")
                               + "descriptors:\n  lowlevel.s: spec.spectrum\n")
    assert text == f"{path}:5: graph.fc.params.frameSize: expected an integer, got 'big'"
    path, text = compile_error(write_profile, HEAD.replace("frameSize: 2048", "frameSize: 0")
                               + "descriptors:\n  lowlevel.s: spec.spectrum\n")
    assert text == f"{path}:5: graph.fc.params.frameSize: 0 is not within [1,inf)"
    path, text = compile_error(write_profile, HEAD.replace("type: hann", "type: hanning")
                               + "descriptors:\n  lowlevel.s: spec.spectrum\n")
    assert "graph.win.params.type: 'hanning' is not one of {" in text


def test_dangling_wire(write_profile):
    path, text = compile_error(write_profile, HEAD + """
  c: {algorithm: Centroid, inputs: {array: spectrum.spectrum}}
descriptors:
  lowlevel.c: c.centroid
""")
    assert text == (f"{path}:9: graph.c.inputs.array: no node named 'spectrum' "
                    "(did you mean 'spec'?)")


def test_unknown_output_and_input_port(write_profile):
    path, text = compile_error(write_profile, HEAD + """
  c: {algorithm: Centroid, inputs: {array: spec.spectrm}}
descriptors:
  lowlevel.c: c.centroid
""")
    assert text == (f"{path}:9: graph.c.inputs.array: 'spec' (Spectrum) has no output "
                    "'spectrm' (did you mean 'spectrum'?)")
    path, text = compile_error(write_profile, HEAD + """
  c: {algorithm: Centroid, inputs: {arr: spec.spectrum}}
descriptors:
  lowlevel.c: c.centroid
""")
    assert "graph.c.inputs.arr: Centroid has no input 'arr' (did you mean 'array'?)" in text


def test_required_input_must_be_connected(write_profile):
    path, text = compile_error(write_profile, HEAD + """
  c: {algorithm: Centroid}
descriptors:
  lowlevel.c: c.centroid
""")
    assert f"{path}:9: graph.c.inputs: Centroid input 'array' is not connected" in text


def test_port_type_mismatch(write_profile):
    path, text = compile_error(write_profile, HEAD + """
  c: {algorithm: Centroid, inputs: {array: audio.signal}}
descriptors:
  lowlevel.c: c.centroid
""")
    assert text == (f"{path}:9: graph.c.inputs.array: type mismatch: audio.signal gives real, "
                    "Centroid.array takes vector_real")


def test_cycle_is_rejected(write_profile):
    path, text = compile_error(write_profile, """
name: t
stats: {lowlevel: [mean]}
graph:
  a: {algorithm: Windowing, inputs: {frame: b.frame}}
  b: {algorithm: Windowing, inputs: {frame: a.frame}}
descriptors:
  lowlevel.a: a.frame
""")
    assert "the graph has a cycle: a -> b -> a" in text


def test_descriptor_needs_statistics(write_profile):
    path, text = compile_error(write_profile, HEAD.replace("lowlevel: [mean, var]", "x: [mean]")
                               + "descriptors:\n  lowlevel.s: spec.spectrum\n")
    assert "descriptors.lowlevel.s: a frame-wise descriptor needs statistics" in text


def test_identical_nodes_are_merged_and_unused_pruned(write_profile):
    _, plan = compile_text(write_profile, HEAD + """
  fc_copy: {algorithm: FrameCutter, params: {hopSize: 1024, frameSize: 2048}, inputs: {signal: audio.signal}}
  win2: {algorithm: Windowing, params: {type: hann}, inputs: {frame: fc_copy.frame}}
  spec2: {algorithm: Spectrum, inputs: {frame: win2.frame}}
  c: {algorithm: Centroid, inputs: {array: spec2.spectrum}}
  unused: {algorithm: RMS, inputs: {array: spec.spectrum}}
descriptors:
  lowlevel.c: c.centroid
  lowlevel.s: spec.spectrum
""")
    assert set(plan.nodes) == {"fc", "win", "spec", "c"}
    assert plan.nodes["c"].inputs["array"].node == "spec"
    assert plan.nodes["fc"].merged_from == ["fc_copy"]


def test_parameter_references_create_stages(write_profile):
    _, plan = compile_text(write_profile, """
name: t
stats: {rhythm: [mean]}
graph:
  rx: {algorithm: RhythmExtractor2013, inputs: {signal: audio.signal}}
  bl: {algorithm: BeatsLoudness, params: {beats: {from: rx.ticks, take: last}}, inputs: {signal: audio.signal}}
descriptors:
  rhythm.beats_loudness: bl.loudness
""")
    assert plan.stages == 2
    assert (plan.nodes["rx"].stage, plan.nodes["bl"].stage) == (0, 1)
    assert "rx.ticks" in plan.recorded
    assert "audio.signal" not in plan.recorded  # stage 1 decodes the file again


def test_later_stage_gets_one_replayed_stream(write_profile):
    # HPCP needs the tuning frequency (stage 1) and two streams of peaks: the peak chain is
    # re-run in stage 1 from the one replayed audio stream instead of two recorded streams.
    _, plan = compile_text(write_profile, HEAD + """
  peaks: {algorithm: SpectralPeaks, inputs: {spectrum: spec.spectrum}}
  tuning: {algorithm: TuningFrequency, inputs: {frequencies: peaks.frequencies, magnitudes: peaks.magnitudes}}
  hpcp: {algorithm: HPCP, params: {referenceFrequency: {from: tuning.tuningFrequency, take: last}}, inputs: {frequencies: peaks.frequencies, magnitudes: peaks.magnitudes}}
descriptors:
  lowlevel.hpcp: hpcp.hpcp
""")
    stage1 = {n.id for n in plan.nodes_in_stage(1)}
    assert "hpcp" in stage1 and "peaks__s1" in stage1
    assert {n.id for n in plan.nodes_in_stage(0)} >= {"peaks", "tuning"}


def test_audio_is_recorded_only_where_a_value_reader_needs_it():
    """The signal costs 635 MB per hour (the stereo signal twice that): later stages decode the
    file again, and no node may read the whole signal back, unless asked for (chromaprint)."""
    plan = compile_profile(load_profile("music"))
    assert "ebu_r128" in plan.nodes and plan.nodes["ebu_r128"].stage == 0
    assert plan.stages > 1  # BeatsLoudness and the HPCPs run after values of stage 0 and 1
    assert "audio.stereo" not in plan.recorded
    assert "audio.signal" not in plan.recorded
    fingerprinted = compile_profile(load_profile("music", ["options.chromaprint.compute=true"]))
    assert "audio.signal" in fingerprinted.recorded  # Chromaprinter reads the whole signal


# -- what the registry derives, checked against what Essentia's networks emit --------------------
def _tokens(build) -> dict[str, int]:
    """Run a small streaming network on 3 s of a tone; count the tokens each output emitted."""
    import numpy as np

    from runner import registry

    essentia = registry.quiet_essentia()
    es = essentia.streaming
    t = np.arange(3 * 44100) / 44100
    signal = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    source = es.VectorInput(signal)
    pool = essentia.Pool()
    keep = build(es, source.data, pool)
    essentia.run(source)
    del keep
    counts = {}
    for name in pool.descriptorNames():  # only scalar and string outputs are counted here
        value = pool[name]
        counts[name] = len(value) if isinstance(value, (list, np.ndarray)) else 1
    return counts


def test_output_rates_match_what_essentia_emits():
    """registry.output_rates (from the two forms of each algorithm, plus the corrections read
    in Essentia's sources) against real networks: per frame, per event or once per track."""
    from runner import registry

    def frames(es, signal, pool):
        fc = es.FrameCutter(frameSize=2048, hopSize=1024)
        win, spec = es.Windowing(), es.Spectrum()
        signal >> fc.signal
        fc.frame >> win.frame
        win.frame >> spec.frame
        rms, sss, key = es.RMS(), es.StartStopSilence(), es.Key()
        hpcp_peaks, hpcp = es.SpectralPeaks(), es.HPCP()
        spec.spectrum >> rms.array
        fc.frame >> sss.frame
        spec.spectrum >> hpcp_peaks.spectrum
        hpcp_peaks.frequencies >> hpcp.frequencies
        hpcp_peaks.magnitudes >> hpcp.magnitudes
        hpcp.hpcp >> key.pcp
        rms.rms >> (pool, "rms@real")
        sss.startFrame >> (pool, "startFrame@real")
        sss.stopFrame >> None
        key.key >> (pool, "key")
        key.scale >> None
        key.strength >> (pool, "strength@real")
        return [fc, win, spec, rms, sss, key, hpcp_peaks, hpcp]

    counts = _tokens(frames)
    assert counts["rms@real"] > 100 and registry.output_rates("RMS")["*"] == registry.PER_TOKEN
    assert counts["startFrame@real"] == 1 and registry.output_rates("StartStopSilence")["*"] == \
        registry.ONCE
    assert counts["strength@real"] == 1 and registry.output_rates("Key")["*"] == registry.ONCE
    assert registry.output_rates("FrameCutter")["*"] == registry.MANY

    def rhythm(es, signal, pool):
        rx = es.RhythmExtractor2013()
        loud = es.LoudnessEBUR128()
        mux = es.StereoMuxer()
        signal >> rx.signal
        signal >> mux.left
        signal >> mux.right
        mux.audio >> loud.signal
        rx.bpm >> (pool, "bpm@real")
        for out in ("ticks", "confidence", "estimates", "bpmIntervals"):
            getattr(rx, out) >> None
        loud.momentaryLoudness >> (pool, "momentary@real")
        loud.integratedLoudness >> (pool, "integrated@real")
        loud.shortTermLoudness >> None
        loud.loudnessRange >> None
        return [rx, loud, mux]

    counts = _tokens(rhythm)
    rates = registry.output_rates("RhythmExtractor2013")
    assert counts["bpm@real"] == 1 and rates["bpm"] == registry.ONCE
    rates = registry.output_rates("LoudnessEBUR128")
    assert counts["momentary@real"] > 1 and rates["momentaryLoudness"] == registry.MANY
    assert counts["integrated@real"] == 1 and rates["integratedLoudness"] == registry.ONCE


def test_configure_errors_stop_every_command_before_any_file(tmp_path, clicks_wav):
    """Essentia's own configure check runs at compile time for every command: a batch exits 2
    before analysing anything (it used to fail every file, one by one, with exit 1)."""
    import shutil

    from runner import cli

    profile = tmp_path / "p.yaml"
    profile.write_text(HEAD + """
  mfcc: {algorithm: MFCC, params: {numberCoefficients: 50, numberBands: 40}, inputs: {spectrum: spec.spectrum}}
descriptors:
  lowlevel.mfcc: mfcc.mfcc
""")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clicks_wav, folder / "a.wav")
    code = cli.main(["run", str(profile), str(folder), "--output", str(tmp_path / "out"), "-q"])
    assert code == 2
    assert not (tmp_path / "out" / "failures.jsonl").exists()
    assert not list((tmp_path / "out").glob("**/*.json")) if (tmp_path / "out").exists() else True


def test_configured_ports_are_bounded():
    from runner import registry

    with pytest.raises(registry.ConfigureError, match="would make 2147483647 ports"):
        registry.ports("Multiplexer", {"numberRealInputs": 2 ** 31 - 1})
    inputs, outputs = registry.ports("SilenceRate", {"thresholds": [0.1, 0.01]})
    assert list(outputs) == ["threshold_0", "threshold_1"]


def test_the_plan_keeps_the_profile_with_its_options_substituted(write_profile):
    """What reads the profile after compiling (the summary command reads its `summary`
    section) reads plan.profile: options substituted there, the loaded profile untouched."""
    path = write_profile("""
        name: my_summary
        extends: rhythm
        options: {tempo: rhythm.bpm}
        summary: {descriptors: {bpm: "${tempo}"}}
        """)
    profile = load_profile(str(path))
    plan = compile_profile(profile)
    assert plan.profile.data["summary"]["descriptors"] == {"bpm": "rhythm.bpm"}
    assert profile.data["summary"]["descriptors"] == {"bpm": "${tempo}"}


@pytest.mark.parametrize("rate, words", [(48000, "its times read 8.8% late and its tempo and rates "
                                                 "8.1% low"),
                                         (32000, "its times read 27.4% early and its tempo and "
                                                 "rates 37.8% high")])
def test_algorithms_that_assume_44100_hz_are_named_at_other_rates(rate, words):
    """RhythmExtractor2013 and OnsetRate take 44100 Hz whatever the signal: at another analysis
    rate every output says so (metadata.warnings); the conditioning profile's derive functions
    take the rate, so it says nothing."""
    plan = compile_profile(load_profile("rhythm", [f"options.analysisSampleRate={rate}"]))
    assert plan.warnings[:2] == [
        f"graph.rhythm_extractor: Essentia's RhythmExtractor2013 assumes 44100 Hz: at an analysis "
        f"rate of {rate} Hz {words}",
        f"graph.onsets: Essentia's OnsetRate assumes 44100 Hz: at an analysis rate of {rate} Hz "
        f"{words}"]
    # and the nodes left at Essentia's default sampleRate, as its extractor leaves them
    assert plan.warnings[2:] == [
        f"at an analysis rate of {rate} Hz, 1 node keeps Essentia's default sampleRate of 44100 "
        f"Hz (as Essentia's extractors do), so the frequencies they compute read "
        f"{'8.1% low' if rate == 48000 else '37.8% high'} and their times "
        f"{'8.8% late' if rate == 48000 else '27.4% early'}: graph.replay_gain"]
    music = compile_profile(load_profile("music", [f"options.analysisSampleRate={rate}"]))
    assert all(f"graph.{node}" in music.warnings[-1] for node in ("hpcp_key", "mfcc", "hfc"))
    assert compile_profile(load_profile("rhythm")).warnings == []
    if rate == 48000:  # (its air band, up to 20 kHz, needs more than 32000)
        conditioning = load_profile("conditioning", [f"options.analysisSampleRate={rate}"])
        assert compile_profile(conditioning).warnings == []
