# The subset of nixpkgs' lib the flake uses, with the same names and meanings.
let
  b = builtins;
  lib = rec {
    inherit (b)
      attrNames
      attrValues
      concatMap
      concatStringsSep
      elem
      filter
      listToAttrs
      mapAttrs
      replaceStrings
      ;

    nameValuePair = name: value: { inherit name value; };
    genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
    mapAttrs' = f: set: listToAttrs (map (n: f n set.${n}) (attrNames set));
    filterAttrs = pred: set: listToAttrs (concatMap (n: if pred n set.${n} then [ (nameValuePair n set.${n}) ] else [ ]) (attrNames set));

    any = b.any;
    all = b.all;
    unique = b.foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    findFirst = pred: default: list: let found = filter pred list; in if found == [ ] then default else b.head found;
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalString = cond: s: if cond then s else "";
    optionalAttrs = cond: set: if cond then set else { };

    concatStrings = concatStringsSep "";
    concatMapStrings = f: list: concatStrings (map f list);
    concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
    escapeShellArg = arg: "'${replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
    escapeShellArgs = concatMapStringsSep " " escapeShellArg;
    stringToCharacters = s: b.genList (p: b.substring p 1 s) (b.stringLength s);
    regexSpecials = stringToCharacters "\\[{()^$?*+|.";
    escapeRegex = replaceStrings regexSpecials (map (c: "\\${c}") regexSpecials);

    hasPrefix = pref: s: b.substring 0 (b.stringLength pref) s == pref;
    hasSuffix = suf: s:
      let
        ls = b.stringLength s;
        lf = b.stringLength suf;
      in
      lf <= ls && b.substring (ls - lf) lf s == suf;
    hasInfix = infix: s: b.match ".*${escapeRegex infix}.*" s != null;
    removePrefix = pref: s: if hasPrefix pref s then b.substring (b.stringLength pref) (-1) s else s;
    removeSuffix = suf: s: if hasSuffix suf s then b.substring 0 (b.stringLength s - b.stringLength suf) s else s;

    licenses = {
      agpl3Plus = { spdxId = "AGPL-3.0-or-later"; free = true; };
      cc0 = { spdxId = "CC0-1.0"; free = true; };
    };
    sourceTypes.binaryNativeCode = { shortName = "binaryNativeCode"; isSource = false; };
  };
in
lib
