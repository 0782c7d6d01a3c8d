{
  description = "extractor-profiles: declarative Essentia streaming extractors, with pinned model weights";

  # The only input. flake.lock pins nixos-24.11 (Python 3.12, numpy 1.26, which laion-clap needs).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      pyproject = builtins.fromTOML (builtins.readFile ./pyproject.toml);
      wheels = builtins.fromJSON (builtins.readFile ./nix/wheels.json);
      # The runner reads the same file (runner/models/supply/lock.py): one list of models.
      modelLock = builtins.fromJSON (builtins.readFile ./models.lock.json);

      # Only systems with an essentia-tensorflow wheel on PyPI (no aarch64-linux one exists).
      systems = lib.attrNames wheels.essentia-tensorflow.wheels;
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The package source, without the Nix files (editing them does not rebuild the runner).
      src = builtins.path {
        name = "extractor-profiles-src";
        path = ./.;
        filter =
          path: type:
          let
            rel = lib.removePrefix (toString ./. + "/") (toString path);
            base = baseNameOf path;
          in
          !(
            lib.elem rel [
              "flake.nix"
              "flake.lock"
              "bench/results"
            ]
            || (lib.hasPrefix "nix/" rel && lib.hasSuffix ".nix" rel)
            || lib.hasPrefix "result" base
            || lib.hasPrefix ".venv" base
            || lib.elem base [
              ".git"
              "__pycache__"
              ".pytest_cache"
              ".ruff_cache"
            ]
          );
      };

      # Only what a model converter imports, so a runner edit does not rebuild the models.
      converterSrc = builtins.path {
        name = "extractor-profiles-converters";
        path = ./.;
        filter =
          path: type:
          let
            rel = lib.removePrefix (toString ./. + "/") (toString path);
          in
          lib.elem rel [
            "runner"
            "runner/__init__.py"
            "runner/models"
            "runner/models/__init__.py"
            "runner/models/convert"
          ]
          || (lib.hasPrefix "runner/models/convert/" rel && lib.hasSuffix ".py" rel);
      };

      # Built-in profiles: profiles/*.yaml without a leading underscore (those are fragments).
      builtinProfiles = map (lib.removeSuffix ".yaml") (
        lib.filter (name: lib.hasSuffix ".yaml" name && !lib.hasPrefix "_" name) (
          lib.attrNames (builtins.readDir ./profiles)
        )
      );

      # Apps: pyproject's hyphenated console scripts. tests/nix/consistency.py compares this
      # list with pyproject and profiles/.
      scripts = lib.attrNames pyproject.project.scripts;
      appNames = lib.filter (name: !lib.hasInfix "_" name) scripts;

      # Model groups each app's wrapper puts on $EXTRACTOR_MODELS (groups of models.lock.json).
      # Only the default group (the musicnn wheel from PyPI, converted): an app that depended on
      # MTG's 27 downloads would break on any one wrong pin. The others: `extractor models fetch`,
      # or `nix build .#models-<group>` on $EXTRACTOR_MODELS (tests/nix/check.sh checks this).
      appModelGroups = {
        music-highlevel = [ "default" ];
        extractor = [ "default" ];
      };
      # The sandbox has no network and the check's Python no TensorFlow: the tests marked for
      # them (pyproject.toml's markers) are left out of checks.tests.
      nixTestSelection = "not network and not tensorflow";

      # Apps that need laion-clap (the `full` package).
      clapApps = [ "music-clap" ];
      # Apps that fit classifiers (`extractor train`: scikit-learn and skl2onnx, the `train` package).
      trainApps = [ "extractor" ];

      # The built-in profile each app runs, for its validation check.
      profileApp =
        profile:
        let
          candidates = [
            "streaming-extractor-${lib.replaceStrings [ "_" ] [ "-" ] profile}"
            "music-${profile}"
          ];
        in
        lib.findFirst (name: lib.elem name appNames) "extractor" candidates;

      perSystem =
        pkgs:
        let
          py = import ./nix/python.nix {
            inherit
              pkgs
              lib
              wheels
              pyproject
              src
              ;
          };
          models = import ./nix/models.nix {
            inherit pkgs lib converterSrc;
            lock = modelLock;
          };
          packageFor =
            app:
            if lib.elem app clapApps then
              py.runnerFull
            else if lib.elem app trainApps then
              py.runnerTrain
            else
              py.runner;

          wrapper =
            name:
            let
              groups = appModelGroups.${name} or [ ];
              modelDir = models.forGroups groups;
            in
            pkgs.writeShellApplication {
              inherit name;
              # Pinned, read-only weights first; user caches stay under $XDG_CACHE_HOME.
              text =
                lib.optionalString (groups != [ ]) ''
                  export EXTRACTOR_MODELS="${modelDir}''${EXTRACTOR_MODELS:+:$EXTRACTOR_MODELS}"
                ''
                + ''
                  exec ${packageFor name}/bin/${name} "$@"
                '';
            };

          testPython = py.python.withPackages (
            ps:
            py.runnerDeps
            ++ py.trainDeps # tests/test_training.py (the `train` extra)
            ++ [
              ps.pytest
              ps.pyarrow
              ps.distributed # tests/test_dask.py (the `dask` extra)
            ]
          );

          devShell =
            extra:
            pkgs.mkShell {
              packages = [
                (py.python.withPackages (
                  ps:
                  py.runnerDeps
                  ++ extra
                  ++ [
                    ps.pytest
                    ps.pyarrow
                    ps.setuptools
                    ps.pip
                  ]
                ))
                pkgs.ruff
                pkgs.nixfmt-rfc-style
              ];
              # The commands of the checkout itself, installed editable into a venv that sees
              # the Nix Python's packages (nothing is downloaded).
              shellHook = ''
                if [ ! -x .venv-nix/bin/python ]; then
                  python -m venv --system-site-packages .venv-nix
                  .venv-nix/bin/pip install -q --no-deps --no-build-isolation -e .
                fi
                export PATH="$PWD/.venv-nix/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=3
              '';
            };
        in
        {
          packages = {
            default = py.runner;
            full = py.runnerFull;
            train = py.runnerTrain;
            inherit (py) essentia-tensorflow laion-clap;
          } // models.packages;

          apps = lib.genAttrs appNames (name: {
            type = "app";
            program = "${wrapper name}/bin/${name}";
          }) // {
            default = self.apps.${pkgs.stdenv.hostPlatform.system}.streaming-extractor-music;
          };

          checks = {
            # The test suite against the packaged commands, but for what the sandbox cannot run.
            tests = pkgs.runCommand "extractor-profiles-tests" {
              nativeBuildInputs = [
                testPython
                py.runner
              ];
            } ''
              cp -r ${src} source && chmod -R u+w source && cd source
              export HOME="$TMPDIR" XDG_CACHE_HOME="$TMPDIR/cache" TF_CPP_MIN_LOG_LEVEL=3
              python -m pytest -q -p no:cacheprovider -m ${lib.escapeShellArg nixTestSelection}
              touch "$out"
            '';
            # The flake's app list against pyproject.toml and profiles/, and the lock file's pins.
            consistency = pkgs.runCommand "extractor-profiles-consistency" {
              nativeBuildInputs = [ py.python ];
            } ''
              python ${src}/tests/nix/consistency.py --root ${src} \
                --apps ${pkgs.writeText "apps.json" (builtins.toJSON appNames)}
              touch "$out"
            '';
          } // lib.listToAttrs (
            map (
              profile:
              lib.nameValuePair "profile-${profile}" (
                pkgs.runCommand "extractor-profile-${profile}" {
                  nativeBuildInputs = [ (packageFor (profileApp profile)) ];
                } ''
                  export HOME="$TMPDIR" TF_CPP_MIN_LOG_LEVEL=3
                  extractor validate ${src}/profiles/${profile}.yaml > "$out"
                ''
              )
            ) builtinProfiles
          );

          devShells = {
            default = devShell [ ];
            full = devShell ([ py.laion-clap ] ++ py.trainDeps);
            train = devShell py.trainDeps;
          };

          formatter = pkgs.nixfmt-rfc-style;
        };

      outputsBySystem = forAllSystems perSystem;
    in
    {
      packages = lib.mapAttrs (_: o: o.packages) outputsBySystem;
      apps = lib.mapAttrs (_: o: o.apps) outputsBySystem;
      checks = lib.mapAttrs (_: o: o.checks) outputsBySystem;
      devShells = lib.mapAttrs (_: o: o.devShells) outputsBySystem;
      formatter = lib.mapAttrs (_: o: o.formatter) outputsBySystem;
    };
}
