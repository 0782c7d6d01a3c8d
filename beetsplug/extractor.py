"""beets plugin: analyse the library with extractor-profiles' music profile.

``beet extract [QUERY]`` runs the matching items through our batch engine (parallel workers,
outputs kept so a rerun skips what is up to date) and stores ``bpm``, ``initial_key`` and
flexible attributes named as beets-xtractor named them (docs/beets.md). The mapping lives in
runner.library.beets_fields and the batch in runner.library.beets_batch; this module is only
the beets side: configuration, the command, the import hook, the database and the tags.
"""

from __future__ import annotations

from pathlib import Path

from beets import config as beets_config
from beets import ui
from beets.dbcore import types
from beets.library import Item
from beets.plugins import BeetsPlugin

from runner.errors import ExtractorError
from runner.library.beets_fields import numeric_fields


class ExtractorPlugin(BeetsPlugin):
    item_types = {name: types.INTEGER if kind is int else types.Float(6)
                  for name, kind in numeric_fields().items()}

    def __init__(self) -> None:
        super().__init__()
        self.config.add({
            "auto": False,        # analyse items as they are imported
            "jobs": 0,            # worker processes; 0: one per core
            "force": False,       # analyse again items whose output is up to date
            "write": None,        # write tags into files; None: beets' import.write
            "profile": "music",   # a built-in profile name or a profile file
            "overrides": [],      # KEY=VALUE options of the profile
            "output_dir": "",     # where outputs are kept; "": CONFIGDIR/extractor
        })
        self._imported: list = []
        if self.config["auto"].get(bool):
            self.register_listener("import_task_files", self.collect_imported)
            self.register_listener("import", self.analyse_imported)

    def commands(self) -> list[ui.Subcommand]:
        command = ui.Subcommand("extract", help="analyse audio with extractor-profiles "
                                "(bpm, initial_key, danceability, moods, ...)")
        command.parser.add_option("-j", "--jobs", type="int", default=None,
                                  help="worker processes [default: one per core]")
        command.parser.add_option("-f", "--force", action="store_true", default=None,
                                  help="analyse again items whose output is up to date")
        command.parser.add_option("-w", "--write", action="store_true", default=None,
                                  help="write the tags into the files")
        command.parser.add_option("-W", "--nowrite", action="store_false", dest="write",
                                  help="do not write the tags into the files")
        command.parser.add_option("-q", "--quiet", action="store_true", default=False,
                                  help="no progress lines")
        command.func = self.command
        return [command]

    def command(self, lib, opts, args: list[str]) -> None:
        write = opts.write if opts.write is not None else self._write_default()
        self.analyse(list(lib.items(args)), jobs=opts.jobs, force=opts.force,
                     write=write, quiet=opts.quiet)

    def collect_imported(self, session, task) -> None:
        self._imported.extend(task.imported_items())

    def analyse_imported(self, lib, paths) -> None:
        items, self._imported = self._imported, []
        if items:
            self.analyse(items, write=self._write_default())

    def _write_default(self) -> bool:
        chosen = self.config["write"].get()
        return bool(chosen) if chosen is not None else beets_config["import"]["write"].get(bool)

    def output_dir(self) -> Path:
        chosen = self.config["output_dir"].as_str()
        if chosen:
            return Path(chosen).expanduser()
        return Path(beets_config.config_dir()) / "extractor"

    def analyse(self, items: list, *, jobs: int | None = None, force: bool | None = None,
                write: bool = False, quiet: bool = False) -> None:
        """Analyse ``items``, store their fields (and write the tags: ``write``); an item
        that fails is reported and the others go on."""
        from runner.library.beets_batch import analyse_items  # loads Essentia: on demand

        if not items:
            ui.print_("extract: no items match")
            return
        by_id = {item.id: item for item in items}
        try:
            done = analyse_items(
                {item.id: item.filepath for item in items}, self.output_dir(),
                profile=self.config["profile"].as_str(),
                overrides=self.config["overrides"].as_str_seq(),
                jobs=jobs or self.config["jobs"].get(int) or None,
                force=bool(force if force is not None else self.config["force"].get(bool)),
                quiet=quiet, note=lambda line: self._log.warning("{}", line),
                reserved=frozenset(Item._fields))
        except ExtractorError as exc:
            raise ui.UserError(str(exc)) from None
        changed = 0
        for item_id, fields in done.fields.items():
            item = by_id[item_id]
            if all(item.get(name) == value for name, value in fields.items()):
                continue
            item.update(fields)
            changed += 1
            if write and item.try_write():
                done.tags_written(item_id)
            item.store()
        for message in done.failed.values():
            self._log.error("{}", message)  # it names the file
        if done.interrupted:  # Ctrl-C: what was analysed is stored, the rest is left
            raise ui.UserError(f"extract: interrupted; {changed} items updated from the "
                               f"{len(done.fields)} analysed so far (run it again for the "
                               f"other {len(items) - len(done.fields)})")
        counts = done.batch
        ui.print_(f"extract: {counts.done} analysed, {counts.skipped} up to date, "
                  f"{counts.failed} failed; {changed} items updated")
