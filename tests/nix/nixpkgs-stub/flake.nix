# An offline stand-in for nixpkgs, for evaluating ../../../flake.nix where no nixpkgs tree can
# be fetched (see tests/nix/check.sh). It has only what the flake uses. Its derivations are real
# .drv files (so fixed-output hashes are parsed and dependencies are recorded), but every
# builder fails: nothing built from this stub is a real package.
{
  description = "nixpkgs stand-in for offline evaluation of extractor-profiles' flake";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
        system: import ./pkgs.nix { inherit lib system; }
      );
    };
}
