# legacyPackages.<system> of the stand-in: the builders and packages the flake names, under
# their nixpkgs attribute names. A misspelt package name fails evaluation here as it would
# against nixpkgs. Builders check the arguments the flake relies on.
{ lib, system }:
let
  b = builtins;
  failing = [
    "-c"
    "echo 'tests/nix/nixpkgs-stub: a stand-in derivation cannot be built' >&2; exit 1"
  ];

  # Attributes a derivation can take: strings, numbers, booleans, derivations and lists of those.
  # Everything a real builder keeps out of the environment (passthru, meta, functions) is dropped.
  envOf =
    attrs:
    lib.filterAttrs (
      name: value:
      !(lib.elem name [
        "passthru"
        "meta"
      ])
      && value != null
      && !(b.isFunction value)
      && !(b.isAttrs value && !(value ? outPath))
    ) attrs;

  mkDerivation =
    attrs:
    let
      name = attrs.name or "${attrs.pname}-${attrs.version}";
      drv = derivation (
        envOf attrs
        // {
          inherit name system;
          builder = "/bin/sh";
          args = failing;
        }
      );
    in
    drv
    // (attrs.passthru or { })
    // {
      meta = attrs.meta or { };
      passthru = attrs.passthru or { };
    };

  need =
    what: attrs: names:
    let
      missing = lib.filter (n: !(attrs ? ${n})) names;
    in
    if missing == [ ] then
      attrs
    else
      throw "nixpkgs-stub: ${what} needs ${lib.concatStringsSep ", " missing}";

  fetchurl =
    args:
    let
      a = need "fetchurl" args [
        "url"
        "sha256"
      ];
    in
    derivation {
      name = a.name or (baseNameOf a.url);
      inherit system;
      inherit (a) url;
      builder = "/bin/sh";
      args = failing;
      outputHashMode = "flat";
      outputHashAlgo = "sha256";
      outputHash = a.sha256; # parsed by Nix: a malformed pin fails evaluation
    };

  runCommand =
    name: env: buildCommand:
    mkDerivation (env // { inherit name buildCommand; });

  pythonVersion = "3.12";
  pythonDrv = mkDerivation { name = "python3-3.12.8"; };
  withInterpreter = drv: drv // { interpreter = "${drv}/bin/python${pythonVersion}"; };

  pythonPackage =
    kind: args:
    let
      a = need kind args [
        "pname"
        "version"
        "src"
      ];
      lists = [
        "dependencies"
        "build-system"
        "nativeBuildInputs"
        "buildInputs"
      ];
      bad = lib.filter (n: a ? ${n} && !(b.all (d: d ? outPath) a.${n})) lists;
    in
    if !(a ? format || a ? pyproject) then
      throw "nixpkgs-stub: ${kind} ${a.pname}: say `format` or `pyproject`"
    else if bad != [ ] then
      throw "nixpkgs-stub: ${kind} ${a.pname}: ${lib.concatStringsSep ", " bad} must list packages"
    else
      mkDerivation (a // { name = "python${pythonVersion}-${a.pname}-${a.version}"; });

  leaf = name: mkDerivation { name = "python${pythonVersion}-${name}-stub"; };

  python3Packages =
    lib.genAttrs [
      "braceexpand"
      "distributed"
      "ftfy"
      "h5py"
      "jsonschema"
      "librosa"
      "numpy"
      "onnxruntime"
      "pandas"
      "pillow"
      "pip"
      "pyarrow"
      "pytest"
      "pyyaml"
      "regex"
      "rich"
      "scikit-learn"
      "scipy"
      "setuptools"
      "six"
      "skl2onnx"
      "soundfile"
      "tensorflow"
      "torch"
      "torchlibrosa"
      "torchvision"
      "tqdm"
      "transformers"
      "webdataset"
      "wget"
    ] leaf
    // {
      buildPythonPackage = pythonPackage "buildPythonPackage";
      buildPythonApplication = pythonPackage "buildPythonApplication";
    };

  python3 =
    withInterpreter pythonDrv
    // {
      inherit pythonVersion;
      pkgs = python3Packages;
      withPackages =
        f:
        withInterpreter (mkDerivation {
          name = "python3-3.12.8-env";
          paths = f python3Packages;
        });
    };

  tool = name: mkDerivation { name = "${name}-stub"; };
in
{
  inherit
    fetchurl
    runCommand
    python3
    python3Packages
    ;
  stdenv = {
    inherit mkDerivation;
    hostPlatform = {
      inherit system;
    };
    cc.cc.lib = tool "gcc-lib";
  };
  writeText = name: text: mkDerivation { inherit name text; };
  symlinkJoin =
    args:
    mkDerivation (
      need "symlinkJoin" args [
        "name"
        "paths"
      ]
    );
  writeShellApplication =
    args:
    mkDerivation (
      need "writeShellApplication" args [
        "name"
        "text"
      ]
    );
  mkShell = args: mkDerivation (args // { name = args.name or "nix-shell"; });
  autoPatchelfHook = tool "auto-patchelf-hook";
  ruff = tool "ruff";
  nixfmt-rfc-style = tool "nixfmt";
}
