"""Loading (YAML, extends, options, --set) and schema validation, with exact error texts."""

from __future__ import annotations

import pytest

from runner.errors import ProfileError
from runner.profile import load_profile, substitute_options

BASE = """
name: base
options:
  frame: 2048
stats:
  lowlevel: [mean]
graph:
  fc: {algorithm: FrameCutter, params: {frameSize: "${frame}", hopSize: 1024}, inputs: {signal: audio.signal}}
  rms: {algorithm: RMS, inputs: {array: fc.frame}}
descriptors:
  lowlevel.rms: rms.rms
"""


def error_text(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


def test_extends_merges_and_null_deletes(write_profile):
    base = write_profile(BASE, "base.yaml")
    child = write_profile(
        f"""
        name: child
        extends: {base.name}
        options: {{frame: 4096}}
        graph:
          zcr: {{algorithm: ZeroCrossingRate, inputs: {{signal: fc.frame}}}}
        descriptors:
          lowlevel.rms: null
          lowlevel.zcr: zcr.zeroCrossingRate
        """,
        "child.yaml",
    )
    profile = substitute_options(load_profile(str(child)))
    assert profile.name == "child"
    assert set(profile.data["descriptors"]) == {"lowlevel.zcr"}
    assert profile.data["graph"]["fc"]["params"]["frameSize"] == 4096  # typed, not "4096"
    # the merged key remembers the file and line that set it
    assert profile.where(("graph", "zcr"))[0].endswith("child.yaml")
    assert profile.where(("graph", "fc"))[0].endswith("base.yaml")


def test_extends_cycle_is_reported(write_profile):
    write_profile("name: a\nextends: b.yaml\n", "a.yaml")
    b = write_profile("name: b\nextends: a.yaml\n", "b.yaml")
    with pytest.raises(ProfileError) as exc:
        load_profile(str(b))
    assert "'extends' forms a cycle: b.yaml -> a.yaml -> b.yaml" in error_text(exc)


def test_yaml_syntax_error_names_file_and_line(write_profile):
    path = write_profile("name: x\ngraph:\n  fc: {algorithm: FrameCutter\n")
    with pytest.raises(ProfileError) as exc:
        load_profile(str(path))
    assert error_text(exc).startswith(f"{path}:4: YAML syntax error")


def test_yaml_cannot_run_code(write_profile):
    path = write_profile("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ProfileError) as exc:
        load_profile(str(path))
    assert error_text(exc) == (f"{path}:1: name: YAML type !!python/object/apply:os.system is "
                               "not allowed in a profile (write plain strings, numbers, lists "
                               "and mappings)")


def test_unknown_top_level_key(write_profile):
    path = write_profile(BASE + "grpah: {}\n")
    with pytest.raises(ProfileError) as exc:
        load_profile(str(path))
    assert error_text(exc).startswith(f"{path}:11: grpah: unknown key 'grpah' (allowed: ")


def test_schema_type_error_points_at_the_key(write_profile):
    path = write_profile(BASE.replace("[mean]", "[mean, avg]"))
    with pytest.raises(ProfileError) as exc:
        load_profile(str(path))
    assert error_text(exc).startswith(f'{path}:5: stats.lowlevel.1: "avg" is not one of')


def test_unknown_builtin_suggests(write_profile):
    with pytest.raises(ProfileError) as exc:
        load_profile("musik")
    assert error_text(exc) == "musik: unknown built-in profile 'musik' (did you mean 'music'?)"


def test_missing_profile_file():
    with pytest.raises(ProfileError) as exc:
        load_profile("nowhere/p.yaml")
    assert error_text(exc) == "nowhere/p.yaml: no such profile file"


def test_set_overrides_values_with_types(write_profile):
    path = write_profile(BASE)
    profile = load_profile(
        str(path), ["options.frame=1024", "graph.fc.params.hopSize=256", "stats.lowlevel=[mean, var]"]
    )
    profile = substitute_options(profile)
    params = profile.data["graph"]["fc"]["params"]
    assert params == {"frameSize": 1024, "hopSize": 256}
    assert profile.data["stats"]["lowlevel"] == ["mean", "var"]


def test_set_dotted_descriptor_names(write_profile):
    path = write_profile(BASE)
    profile = load_profile(str(path), ["descriptors.lowlevel.rms=fc.frame"])
    assert profile.data["descriptors"]["lowlevel.rms"] == "fc.frame"


def test_set_without_equals():
    with pytest.raises(ProfileError) as exc:
        load_profile("music", ["options.lowlevel.frameSize"])
    assert "--set expects key.path=value" in error_text(exc)


def test_unknown_option_reference(write_profile):
    path = write_profile(BASE.replace("${frame}", "${fram}"))
    profile = load_profile(str(path))
    with pytest.raises(ProfileError) as exc:
        substitute_options(profile)
    assert error_text(exc) == (
        f"{path}:7: graph.fc.params.frameSize: unknown option 'fram' (did you mean 'frame'?)"
    )


def test_every_committed_schema_is_valid_against_its_metaschema():
    """The runner trusts its own schemas at start-up (no check_schema per run): this is that
    check."""
    import json
    from pathlib import Path

    import jsonschema

    folder = Path(__file__).parent.parent / "schemas"
    paths = sorted(folder.glob("*.json"))
    assert any(p.name == "profile.schema.json" for p in paths)
    for path in paths:
        schema = json.loads(path.read_text())
        jsonschema.validators.validator_for(schema).check_schema(schema)


ITEMS_SCHEMA = {
    "type": "object",
    "properties": {
        "stats": {"type": "array", "items": {"type": ["number", "null"]}},
        "counts": {"type": "array", "items": {"type": "integer"}},
        "cov": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "names": {"type": "array", "items": {"type": "string"}},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "number"}},
    },
}


@pytest.mark.parametrize("doc", [
    {"stats": [1.0, None, 2]}, {"stats": [1.0, "x"]}, {"stats": [True, 1.0]},
    {"counts": [1, 2.0]}, {"counts": [1.5]}, {"counts": [False]},
    {"cov": [[1.0, 2.0], [3.0, "q"]]}, {"cov": [[1.0], 2.0]}, {"names": ["a", 1]},
    {"pair": ["a", 1.0]}, {"pair": [1.0, 1.0]}, {"stats": []},
])
def test_output_validator_gives_jsonschemas_verdict_and_errors(doc):
    """The output validator checks type-only arrays in one pass (runner.output.schema); its
    verdict, messages and error paths must stay exactly jsonschema's."""
    import jsonschema

    from runner.output import validator

    ours = [(e.message, list(e.absolute_path)) for e in validator(ITEMS_SCHEMA).iter_errors(doc)]
    reference = jsonschema.Draft202012Validator(ITEMS_SCHEMA).iter_errors(doc)
    assert ours == [(e.message, list(e.absolute_path)) for e in reference]


# -- overrides never vanish; graph nodes merge and delete like any mapping ----------------------
def test_partial_node_override_changes_one_parameter():
    """`graph: {node: {params: {...}}}` overrides one parameter; the rest is inherited."""
    from runner.compile import compile_profile

    base = compile_profile(load_profile("rhythm")).nodes["rhythm_extractor"].params
    assert base["method"] == "degara"
    profile = load_profile("rhythm", ["graph.rhythm_extractor.params.method=multifeature"])
    plan = compile_profile(profile)
    params = plan.nodes["rhythm_extractor"].params
    assert params["method"] == "multifeature"
    assert {k: v for k, v in params.items() if k != "method"} == {
        k: v for k, v in base.items() if k != "method"}


def test_partial_node_override_in_a_file(write_profile):
    path = write_profile("""
        name: child
        extends: rhythm
        graph:
          rhythm_extractor: {params: {method: multifeature}}
        """)
    profile = load_profile(str(path))
    spec = profile.data["graph"]["rhythm_extractor"]
    assert spec["algorithm"] == "RhythmExtractor2013" and spec["params"]["method"] == "multifeature"
    assert profile.where(("graph", "rhythm_extractor", "params", "method")) == (str(path), 4)
    assert profile.where(("graph", "rhythm_extractor", "algorithm"))[0].endswith("rhythm.yaml")


def test_node_with_an_algorithm_replaces_the_inherited_one(write_profile):
    base = write_profile(BASE, "base.yaml")
    child = write_profile(f"""
        name: child
        extends: {base.name}
        graph:
          rms: {{algorithm: Energy, inputs: {{array: fc.frame}}}}
        descriptors:
          lowlevel.rms: rms.energy
        """, "child.yaml")
    profile = load_profile(str(child))
    assert profile.data["graph"]["rms"] == {"algorithm": "Energy", "inputs": {"array": "fc.frame"}}
    assert list(profile.data["graph"]) == ["fc", "rms"]  # in its place


def test_null_node_removes_what_depends_on_it_and_says_so(write_profile):
    path = write_profile("""
        name: no_rhythm
        extends: rhythm
        graph:
          rhythm_extractor: null
        """)
    profile = load_profile(str(path))
    graph, descriptors = profile.data["graph"], profile.data["descriptors"]
    assert "rhythm_extractor" not in graph
    assert "bpm_histogram" not in graph and "beats_loudness" not in graph
    assert "rhythm.bpm" not in descriptors and "rhythm.onset_rate" in descriptors
    assert profile.notes == [
        f"{path}:4: graph.rhythm_extractor: removed with null, and with it what depended on "
        "it: 3 node(s): beats_count, beats_loudness, bpm_histogram; 11 descriptor(s): "
        "rhythm.beats_count, rhythm.beats_loudness, rhythm.beats_loudness_band_ratio, "
        "rhythm.beats_position, rhythm.bpm, rhythm.bpm_histogram, "
        "rhythm.bpm_histogram_first_peak_bpm, rhythm.bpm_histogram_first_peak_weight, "
        "rhythm.bpm_histogram_second_peak_bpm, rhythm.bpm_histogram_second_peak_spread, "
        "rhythm.bpm_histogram_second_peak_weight"]
    from runner.compile import compile_profile

    plan = compile_profile(profile)
    assert {d.name for d in plan.descriptors} >= {"rhythm.onset_rate", "rhythm.danceability"}


def test_null_node_with_set_and_the_cli_note(capsys):
    from runner import cli

    assert cli.main(["validate", "rhythm", "--set", "graph.bpm_histogram=null"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["note: --set: graph.bpm_histogram: removed with null, and with it what "
                   "depended on it: 6 descriptor(s): rhythm.bpm_histogram, "
                   "rhythm.bpm_histogram_first_peak_bpm, rhythm.bpm_histogram_first_peak_weight, "
                   "rhythm.bpm_histogram_second_peak_bpm, rhythm.bpm_histogram_second_peak_spread, "
                   "rhythm.bpm_histogram_second_peak_weight"]


def test_options_used_only_by_a_removed_builtin_node_are_not_errors(write_profile):
    """Only options a person set must be used; a built-in's may lose their node."""
    path = write_profile("""
        name: no_chroma
        extends: music
        graph:
          chromaprint: null
        """)
    profile = load_profile(str(path))
    assert "chromaprint.duration" in profile.data["options"]


def test_arithmetic_is_bounded():
    from runner.profile.options import arithmetic

    assert arithmetic("44100.0 * 0.5") == 22050.0
    assert arithmetic("2 ** 10") == 1024
    assert arithmetic("'abc' + 'd'") is None  # not arithmetic: left to string substitution
    for text, message in [("2048 / 0", "division by zero"), ("2 ** 65", "an exponent over 64"),
                          ("2 ** 64", "a value beyond"), ("1e300 * 1e300", "a value beyond"),
                          ("0 ** -1", "zero to a negative power"),
                          ("(-8) ** 0.5", "a fractional power"),
                          (" + ".join(["1"] * 200), "longer than 256")]:
        with pytest.raises(ArithmeticError, match=message):
            arithmetic(text)


def test_limits_are_documented_in_the_profiles_page():
    from pathlib import Path

    from runner.profile import options, reading, validate

    text = (Path(__file__).parent.parent / "docs" / "profiles.md").read_text()
    for figure in (f"{reading.MAX_PROFILE_BYTES // 1024} KiB", f"{reading.MAX_YAML_NODES:,}",
                   f"{reading.MAX_ALIASES:,} alias", f"nesting {reading.MAX_DEPTH} deep",
                   f"{validate.MAX_GRAPH_NODES} graph nodes",
                   f"{validate.MAX_DESCRIPTORS:,} descriptors",
                   f"{options.MAX_EXPRESSION_CHARS} characters",
                   f"up to {options.MAX_EXPONENT}"):
        assert figure in text, figure


def test_a_folder_named_like_a_builtin_profile_does_not_hide_it(tmp_path, monkeypatch):
    """`streaming-extractor-music` run beside a `music/` folder (or a file named `beats`) is
    still the built-in profile; `./beats` names the local file."""
    from runner.profile import builtin_dir, resolve_reference

    (tmp_path / "music").mkdir()
    (tmp_path / "beats").write_text("name: mine\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_reference("music") == builtin_dir() / "music.yaml"
    assert resolve_reference("beats") == builtin_dir() / "beats.yaml"
    assert resolve_reference("./beats").resolve() == tmp_path / "beats"
    assert load_profile("music").name == "music"


# -- the steps are plain functions: each returns its result and leaves its input as it was ----
def _snapshot(profile) -> str:
    """Everything a Profile holds, as text (two equal snapshots: nothing changed)."""
    import dataclasses
    import json

    return json.dumps({f.name: repr(getattr(profile, f.name))
                       for f in dataclasses.fields(profile)}, sort_keys=True)


@pytest.mark.parametrize("name", ["music", "rhythm", "freesound_general"])
def test_compile_leaves_the_profile_it_is_given_as_it_was(name):
    """compile_profile substitutes options into a copy (the Plan keeps that copy): the loaded
    profile keeps its ${references}, and compiling it twice gives the same Plan."""
    from runner.compile import compile_profile

    profile = load_profile(name)
    before = _snapshot(profile)
    plan = compile_profile(profile)
    assert _snapshot(profile) == before
    assert "${" in json_text(profile.data) and "${" not in json_text(plan.profile.data)
    assert plan.profile is not profile and plan.profile.option_uses and not profile.option_uses
    again = compile_profile(profile)
    assert again.digest == plan.digest and again.order == plan.order


def json_text(data) -> str:
    import json

    return json.dumps({k: v for k, v in data.items() if k != "options"})


def test_overrides_and_options_return_new_profiles(write_profile):
    from runner.profile.overrides import apply_overrides

    merged = load_profile(str(write_profile(BASE)))
    before = _snapshot(merged)
    changed = apply_overrides(merged, ["options.frame=1024", "graph.rms=null"])
    resolved = substitute_options(changed)
    assert _snapshot(merged) == before  # neither step touched what it was given
    assert changed.data["options"]["frame"] == 1024 and "rms" not in changed.data["graph"]
    assert changed.data["graph"]["fc"]["params"]["frameSize"] == "${frame}"
    assert resolved.data["graph"]["fc"]["params"]["frameSize"] == 1024
    assert changed.origins[("options", "frame")] == ("--set", 0)
    assert merged.origins[("options", "frame")][0] != "--set"
    assert apply_overrides(merged, []) is merged  # nothing to apply: the same profile


def test_an_essentia_profile_file_leaves_its_base_as_it_was(write_profile):
    from runner.profile import essentia_format, read_yaml
    from runner.profile.extends import read_profile
    from runner.profile.references import resolve_reference

    path = write_profile("lowlevel:\n  frameSize: 4096\noutputFormat: yaml\n", "essentia.yaml")
    base = read_profile(resolve_reference("lowlevel"))
    before = _snapshot(base)
    data, lines = read_yaml(path)
    applied = essentia_format.apply(base, data, str(path), lines)
    assert _snapshot(base) == before
    assert applied.source == str(path) and applied.data["options"]["lowlevel.frameSize"] == 4096
    assert applied.data["output"]["format"] == "yaml" and applied.where(("output", "format")) == (
        str(path), 3)


# -- defaults are stated once, in the schema -----------------------------------------------------
def test_defaults_come_from_the_schema_and_are_valid(write_profile):
    """The settings' dataclasses state no default of their own; the schema's defaults, filled
    into a profile that leaves everything unsaid, validate and compile to those settings."""
    import dataclasses

    import jsonschema

    from runner.compile import AudioConfig, OutputConfig, compile_profile
    from runner.profile import apply_defaults, load_schema

    for config in (AudioConfig, OutputConfig):
        assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   for f in dataclasses.fields(config)), config
    schema = load_schema("profile.schema.json")
    filled = apply_defaults({"name": "x", "graph": {"n": {"function": "stereo_balance", "inputs": {
        "stereo": {"from": "audio.stereo"}}}}, "descriptors": {"d": {"from": "n.balance"}}})
    jsonschema.Draft202012Validator(schema).validate(filled)
    audio, output = schema["properties"]["audio"]["properties"], \
        schema["properties"]["output"]["properties"]
    assert filled["audio"] == {k: v["default"] for k, v in audio.items() if "default" in v}
    assert filled["output"] == {k: v["default"] for k, v in output.items() if "default" in v}
    assert filled["graph"]["n"]["inputs"]["stereo"]["take"] == "all"
    assert filled["descriptors"]["d"] == {"from": "n.balance", "single": False, "enabled": True}
    plan = compile_profile(load_profile(str(write_profile(BASE))))  # no audio, no output
    assert dataclasses.asdict(plan.audio) == filled["audio"]
    assert dataclasses.asdict(plan.output) == {**filled["output"], "schema": None}


def test_defaults_do_not_enter_the_result_hash(write_profile):
    """A default filled in is not part of the resolved profile (plan.profile), so results keep
    the hash they had before defaults came from the schema."""
    from runner.compile import compile_profile

    plain = compile_profile(load_profile(str(write_profile(BASE, "plain.yaml"))))
    assert "audio" not in plain.profile.data and "output" not in plain.profile.data
    assert plain.audio.sample_rate == 44100.0 and plain.output.indent == 2
