# The runner and the two Python packages nixpkgs lacks, built from their PyPI wheels
# (pinned by sha256 in nix/wheels.json).
{
  pkgs,
  lib,
  wheels,
  pyproject,
  src,
}:
let
  python = pkgs.python3;
  ps = python.pkgs;
  system = pkgs.stdenv.hostPlatform.system;
  cpTag = "cp" + lib.replaceStrings [ "." ] [ "" ] python.pythonVersion;
  fetchWheel =
    pin:
    pkgs.fetchurl {
      inherit (pin) name url sha256;
    };

  essentiaPin =
    wheels.essentia-tensorflow.wheels.${system}.${cpTag}
      or (throw "nix/wheels.json: no essentia-tensorflow wheel for ${system} and Python ${python.pythonVersion}");

  # Essentia with its bundled libtensorflow 2.5 (the TensorflowPredict* algorithms).
  essentia-tensorflow = ps.buildPythonPackage {
    pname = "essentia-tensorflow";
    inherit (wheels.essentia-tensorflow) version;
    format = "wheel";
    src = fetchWheel essentiaPin;
    nativeBuildInputs = [ pkgs.autoPatchelfHook ];
    buildInputs = [ pkgs.stdenv.cc.cc.lib ]; # libstdc++, libgcc_s
    dependencies = [
      ps.numpy
      ps.pyyaml
      ps.six
    ];
    pythonImportsCheck = [ "essentia.standard" ];
    meta = {
      description = "Essentia audio analysis library with TensorFlow support (PyPI wheel)";
      homepage = "https://essentia.upf.edu";
      license = lib.licenses.agpl3Plus;
      sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
      platforms = lib.attrNames wheels.essentia-tensorflow.wheels;
    };
  };

  # LAION-CLAP, for the clap profile. Its wheel declares training-only requirements (wandb,
  # progressbar) that inference never imports, and pins numpy < 2; torchvision and pillow are
  # imported but undeclared. Importing it is not checked here: the import loads tokenizers
  # from the Hugging Face hub, which a build sandbox cannot reach.
  laion-clap = ps.buildPythonPackage {
    pname = "laion-clap";
    inherit (wheels.laion-clap) version;
    format = "wheel";
    src = fetchWheel wheels.laion-clap.wheels.any;
    dependencies = [
      ps.numpy
      ps.torch
      ps.torchvision
      ps.pillow
      ps.transformers
      ps.librosa
      ps.torchlibrosa
      ps.soundfile
      ps.ftfy
      ps.braceexpand
      ps.webdataset
      ps.wget
      ps.scipy
      ps.scikit-learn
      ps.pandas
      ps.h5py
      ps.tqdm
      ps.regex
    ];
    pythonRemoveDeps = [
      "wandb"
      "progressbar"
      "llvmlite"
    ];
    pythonRelaxDeps = [ "numpy" ];
    meta = {
      description = "Contrastive Language-Audio Pretraining (PyPI wheel)";
      homepage = "https://github.com/LAION-AI/CLAP";
      license = lib.licenses.cc0;
    };
  };

  # nixpkgs attribute names of the runner's requirements (pyproject.toml's dependencies).
  runnerDeps = [
    essentia-tensorflow
    ps.numpy
    ps.pyyaml
    ps.jsonschema
    ps.rich
    ps.soundfile
    # The onnx-classifier model family (classifiers made by `extractor train`) runs in every
    # command that runs models: onnxruntime is in every package (pyproject's `train` extra).
    ps.onnxruntime
  ];

  # What `extractor train` adds to fit and export classifiers (pyproject's `train` extra;
  # tests/nix/consistency.py checks the two lists agree).
  trainDeps = [
    ps.scikit-learn
    ps.skl2onnx
  ];

  mkRunner =
    {
      pname,
      extra ? [ ],
    }:
    ps.buildPythonApplication {
      inherit pname src;
      inherit (pyproject.project) version;
      pyproject = true;
      build-system = [ ps.setuptools ];
      dependencies = runnerDeps ++ extra;
      # The suite runs as checks.<system>.tests, against this package's commands.
      doCheck = false;
      pythonImportsCheck = [
        "runner.cli"
        "runner.models.supply.lock"
      ];
      meta = {
        inherit (pyproject.project) description;
        license = lib.licenses.agpl3Plus;
        mainProgram = "extractor";
        platforms = lib.attrNames wheels.essentia-tensorflow.wheels;
      };
    };
in
{
  inherit
    python
    essentia-tensorflow
    laion-clap
    runnerDeps
    trainDeps
    ;
  # The runner without CLAP: every command but music-clap. No torch in its closure.
  runner = mkRunner { pname = "extractor-profiles"; };
  # The runner with scikit-learn and skl2onnx: `extractor train` (the `extractor` app).
  runnerTrain = mkRunner {
    pname = "extractor-profiles-train";
    extra = trainDeps;
  };
  # The runner with laion-clap (torch, transformers) and the training tools: music-clap, and
  # classifiers trained on CLAP vectors.
  runnerFull = mkRunner {
    pname = "extractor-profiles-full";
    extra = [ laion-clap ] ++ trainDeps;
  };
}
