"""The ``armory-datasets`` command: inspect, query, serve, share exports; run the demo.

Exit codes: 0 success; 2 usage errors, bad criteria (the message points a caret at the
error) and SQL that does not fit the export; 1 anything else (one line, or a traceback
with ``--debug``).

Example::

    armory-datasets info exports/digits-classification
    armory-datasets query exports/digits-classification --where "~correct & confidence > 0.9" \\
        --columns chain,sample_index,prediction --format csv
    armory-datasets app exports/digits-classification --where "chains(['fgsm'])" --port 5151
    armory-datasets app --list
    armory-datasets pack exports/digits-classification digits.tar.gz
    armory-datasets unpack digits.tar.gz /data/digits
    armory-datasets columns exports/digits-classification
    armory-datasets convert exports/digits-classification --format imagefolder --out digits-folders \\
        --where "chains(['fgsm']) & ~correct" --split 0.8,0.2
    armory-datasets verify /data/digits --repair
    armory-datasets partition /data/digits --by chain
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from armory_datasets import __version__
from armory_datasets.criteria import CriteriaSyntaxError

PROG = "armory-datasets"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
FORMATS = ("table", "csv", "json", "parquet")


class UsageError(Exception):
    """A bad combination of options (exit code 2)."""


def _open(path: str) -> Any:
    from armory_datasets.reading import open_export

    return open_export(path)


def _open_many(paths: list[str]) -> Any:
    """One export, or several (directories or globs) as one table keyed by export_id."""
    from armory_datasets.reading_many import open_exports

    if len(paths) == 1 and Path(paths[0]).is_dir():
        return _open(paths[0])
    return open_exports(paths)


# ------------------------------------------------------------------------------ info


def _size(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``."""
    files = total = 0
    for root, _, names in os.walk(path):
        for name in names:
            files += 1
            total += (Path(root) / name).stat().st_size
    return files, total


def _human(size: float) -> str:
    """A byte count for people, e.g. ``1.5 KiB``."""
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def cmd_info(args: argparse.Namespace) -> int:
    """Print the manifest summary and record counts."""
    from armory_datasets.reading_fiftyone import dataset_name
    from armory_datasets.store.parquet_writer import count_records

    export = _open(args.path)
    m = export.manifest
    counts = m["counts"] or count_records(export.path / m["table"]["dir"])
    if args.json:
        from armory_datasets.store.manifest import to_json

        print(to_json({"path": str(export.path), "counts": counts, "manifest": m}))
        return 0
    evaluation = m["evaluation"]
    images, image_bytes = _size(export.path / "media" / "images")
    heatmaps, heatmap_bytes = _size(export.path / "media" / "heatmaps")
    table_bytes = sum(p.stat().st_size for p in export.parts)
    per_chain = ", ".join(f"{c} {n}" for c, n in counts["per_chain"].items())
    dynamic = [c["name"] for c in m["dynamic_columns"]]
    lines = [
        ("export", f"{export.path}"),
        ("id", f"{m['export_id']} (status {m['status']}, armory_datasets "
               f"{m['armory_datasets_version']})"),
        ("evaluation", f"{evaluation['name']}: {evaluation['description'] or '-'} "
                       f"(author {evaluation['author'] or '-'})"),
        ("written", f"{m['created_at']} .. {m['updated_at']}"),
        ("records", f"{counts['records']}" + (f" ({per_chain})" if per_chain else "")),
    ]
    for exporter in m["exporters"]:
        lines.append(("exporter", f"{exporter['name']} ({exporter['type']}): "
                                  f"{exporter['criterion']} -> "
                                  f"{counts['per_exporter'].get(exporter['name'], 0)} records"))
    if m["class_names"] is not None:
        names = m["class_names"]
        lines.append(("classes", f"{len(names)}: {', '.join(names[:20])}"
                                 + (", ..." if len(names) > 20 else "")))
    lines += [
        ("columns", f"{len(export.columns)} ({len(dynamic)} dynamic"
                    + (f": {', '.join(dynamic)})" if dynamic else ")")),
        ("files", f"table {len(export.parts)} part(s) {_human(table_bytes)}; images {images} "
                  f"{_human(image_bytes)}; heatmaps {heatmaps} {_human(heatmap_bytes)}"),
        ("fiftyone", f"dataset {dataset_name(export)!r} (loaded or rebuilt by "
                     f"`{PROG} app` / Export.fiftyone())"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0


# ------------------------------------------------------------------------------ query


def _write(table: Any, fmt: str, output: str | None) -> None:
    """Write a pyarrow Table to ``output`` (stdout when None) in ``fmt``."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        from armory_datasets.store.parquet_writer import parquet_options

        pq.write_table(table, output, **parquet_options(table.schema))
        return
    if fmt == "json":
        text = _strict_json(table.to_pylist(), indent=1) + "\n"
    elif fmt == "csv":
        text = _json_nested(table).to_pandas().to_csv(index=False)
    else:
        text = table.to_pandas().to_string(index=False, max_colwidth=48) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)


def _strict_json(value: Any, indent: int | None = None) -> str:
    """JSON text (RFC 8259) of ``value``: NaN and infinities, for which JSON has no number,
    become null (Python's ``json`` would write ``NaN`` and ``Infinity``, which ``jq`` and
    browsers reject).

    Example:
        >>> _strict_json({"score": float("inf"), "logits": [1.5, float("nan")]})
        '{"score": null, "logits": [1.5, null]}'
    """
    from armory_datasets.store.manifest import strict_json

    return strict_json(value, indent, lambda number: None, default=str)


def _json_nested(table: Any) -> Any:
    """``table`` with list/struct/map columns as JSON text (one JSON value per cell).

    Example:
        >>> import pyarrow as pa
        >>> _json_nested(pa.table({"logits": [[1.5, -2.0], None]})).column(0).to_pylist()
        ['[1.5, -2.0]', None]
    """
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = [None if v is None else _strict_json(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def cmd_query(args: argparse.Namespace) -> int:
    """Select records with criteria (or SQL) and print or save them."""
    if args.format == "parquet" and args.output is None:
        raise UsageError("--format parquet needs --output FILE")
    if args.sql is not None and (args.where is not None or args.columns is not None):
        raise UsageError("--sql cannot be combined with --where or --columns; put them in the query")
    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit: got {args.limit}; expected a count >= 0")
    export = _open_many(args.path)
    if args.sql is not None:
        table = export.sql(args.sql)
        table = table if args.limit is None else table.slice(0, args.limit)
    else:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
        table = export.table(where=args.where, columns=columns, limit=args.limit)
    _write(table, args.format, args.output)
    if args.output is not None:
        print(f"wrote {table.num_rows} records to {args.output}", file=sys.stderr)
    return 0


def _type_text(arrow_type: Any) -> str:
    """An Arrow type in the notation of schemas/table.v1.json.

    Example:
        >>> import pyarrow as pa
        >>> _type_text(pa.list_(pa.struct([("label", pa.int64()), ("score", pa.float64())])))
        'list<struct<label:int64,score:float64>>'
    """
    import pyarrow as pa

    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return f"list<{_type_text(arrow_type.value_type)}>"
    if pa.types.is_struct(arrow_type):
        return "struct<" + ",".join(f"{f.name}:{_type_text(f.type)}" for f in arrow_type) + ">"
    return {"double": "float64", "float": "float32", "large_string": "string"}.get(
        str(arrow_type), str(arrow_type))


_MAP_STATS = {"path": "file of saliency map {}, relative to the export directory",
              "min": "minimum of saliency map {}", "max": "maximum of saliency map {}",
              "mean": "mean of saliency map {}",
              "in_box": "share of saliency map {}'s above-mean mass inside its box (D-RISE)"}


def _dynamic_description(name: str, maps: Sequence[str]) -> str:
    """What a column outside the vocabulary holds, from its name."""
    for field in maps:
        stat = name[len(field) + 1:] if name.startswith(f"{field}_") else None
        if stat in _MAP_STATS:
            return _MAP_STATS[stat].format(field).capitalize() + "."
    return "Dynamic column (manifest): dataset metadata, a named metric or a perturbation parameter."


def cmd_columns(args: argparse.Namespace) -> int:
    """List the export's columns: name, type and description (schemas/table.v1.json)."""
    from armory_datasets.hf import heatmap_fields
    from armory_datasets.schema import VOCABULARY

    export = _open(args.path)
    maps = heatmap_fields(export.schema)
    rows = [{"name": field.name, "type": _type_text(field.type),
             "description": VOCABULARY[field.name].description if field.name in VOCABULARY
             else _dynamic_description(field.name, maps)} for field in export.schema]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max((len(r["name"]) for r in rows), default=0)
    type_width = min(max((len(r["type"]) for r in rows), default=0), 40)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['type']:<{type_width}}  {row['description']}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Write the selected records in a training format (one dataset per chain)."""
    export = _open(args.path)
    try:
        out = export.convert(args.out, args.format, where=args.where, split=args.split,
                             seed=args.seed)
    except ValueError as error:
        if str(error).startswith(("split:", "format")):
            raise UsageError(f"--{error}") from error
        raise
    chains = sorted(p.name for p in out.iterdir())
    print(f"wrote {args.format} to {out} ({len(chains)} chain(s): {', '.join(chains) or 'none'})")
    return 0


# ------------------------------------------------------------------------------ app


def cmd_app(args: argparse.Namespace) -> int:
    """Serve the export in the FiftyOne App until interrupted (or list what is served)."""
    from armory_datasets.app import app_url, launch_export_app, registered, served_apps

    if args.list:
        if args.path is not None:
            raise UsageError("--list takes no export directory")
        apps = served_apps()
        for app in apps:
            where = f", where {app['where']}" if app["where"] else ""
            print(f"{app['url']}  pid {app['pid']}  dataset {app['dataset']!r} "
                  f"({app['samples']} samples{where})  {app['export']}")
        if not apps:
            print("no armory-datasets app is serving", file=sys.stderr)
        return 0
    if args.path is None:
        raise UsageError("expected an export directory (or --list)")
    if not getattr(args, "debug", False):
        os.environ.setdefault("FIFTYONE_LOGGING_LEVEL", "ERROR")  # before fiftyone is imported
    export = _open(args.path)
    session = launch_export_app(export, where=args.where, port=args.port, address=args.address)
    with registered(session, export, args.where) as entry:
        print(f"FiftyOne App: {app_url(session)} (dataset {entry['dataset']!r}, "
              f"{entry['samples']} samples); press Ctrl-C to stop", flush=True)
        try:
            session.wait(-1)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------ demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Run examples/digits_classification.py (train, evaluate, export, query)."""
    script = EXAMPLES_DIR / "digits_classification.py"
    if not script.is_file():
        raise FileNotFoundError(
            f"{script}: the demo script is not there; it ships with the source checkout "
            f"(examples/digits_classification.py), not with an installed wheel")
    spec = importlib.util.spec_from_file_location("digits_classification", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    export_dir = args.export_dir or module.DEFAULT_EXPORT_DIR
    module.main(export_dir=export_dir, quick=args.quick)
    return 0


# ------------------------------------------------------------------------------ sharing


def cmd_pack(args: argparse.Namespace) -> int:
    """Write the export into one .tar.gz/.zip archive."""
    from armory_datasets.sharing import pack_export

    try:
        archive = pack_export(args.path, args.archive, allow_incomplete=args.allow_incomplete)
    except ValueError as error:  # the API's wording names the argument, not the flag
        raise ValueError(str(error).replace("allow_incomplete=True", "--allow-incomplete")) \
            from error
    print(f"packed {args.path} into {archive} ({_human(archive.stat().st_size)})")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    """Extract an archive made by ``pack`` into DEST (the export directory)."""
    from armory_datasets.sharing import unpack_export

    export = unpack_export(args.archive, args.dest)
    print(f"unpacked {export.export_id} ({export.count()} records) into {export.path}")
    return 0


# ------------------------------------------------------------------------------ verify


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the export against its manifest and the schemas (exit 1 if anything is wrong)."""
    from armory_datasets.verify import verify_export

    report = verify_export(args.path, repair=args.repair)
    if args.json:
        print(json.dumps({"path": str(report.export_dir), "ok": report.ok,
                          "records": report.records, "status": report.status, "repaired": report.repaired,
                          "problems": [vars(p) for p in report.problems],
                          "quarantined": report.quarantined,
                          "lost_records": report.lost_records}, indent=2))
    else:
        print(report)
    return 0 if report.ok else 1


def cmd_commit(args: argparse.Namespace) -> int:
    """Commit an export its shards wrote (every writer journal done, no record twice)."""
    from armory_datasets.store.commit import commit_export

    manifest = commit_export(args.path)
    counts = manifest["counts"]
    print(f"committed {manifest['export_id']}: {counts['records']} records in "
          f"{len(manifest['table']['parts'])} part(s)"
          + (f"; FiftyOne dataset {manifest['fiftyone']['dataset']!r}"
             if manifest["fiftyone"]["dataset"] else ""))
    return 0


# ------------------------------------------------------------------------------ partition


def cmd_partition(args: argparse.Namespace) -> int:
    """Write the Hive-partitioned copy of the table and print where it went."""
    from armory_datasets.partitioned import open_partitioned, write_partitioned

    by = [c.strip() for c in args.by.split(",")]
    out = write_partitioned(args.path, by, args.out)
    data = open_partitioned(out)
    print(f"partitioned {data.count_rows()} records by {','.join(by)} into {out} "
          f"({len(data.files)} file(s))")
    return 0


# ------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command.

    Example:
        >>> build_parser().parse_args(["query", "run1", "--where", "~correct"]).where
        '~correct'
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and library warnings")
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common],
        description="Inspect, query, serve and share armory_datasets exports.",
        epilog="exit codes: 0 ok, 2 usage error, bad criteria or SQL, 1 other errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str,
                description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help,
                                  description=description or help)
        sub.set_defaults(run=run)
        return sub

    info = command("info", cmd_info, "print the manifest summary and record counts")
    info.add_argument("path", help="export directory")
    info.add_argument("--json", action="store_true", help="print the manifest and counts as JSON")

    query = command("query", cmd_query, "select records by criteria (or SQL) and print or save them",
                    "Select records with the criteria language (pushed into the Parquet scan) "
                    "or DuckDB SQL over the view 'samples'. Several exports (or a glob) are "
                    "read as one table keyed by export_id.")
    query.add_argument("path", nargs="+", help="export directories or globs such as 'exports/run-*'")
    query.add_argument("--where", metavar="TEXT",
                       help="criteria text, e.g. \"~correct & confidence > 0.9\"")
    query.add_argument("--sql", metavar="QUERY",
                       help="DuckDB SQL over the view 'samples' instead of --where/--columns")
    query.add_argument("--columns", metavar="A,B", help="comma-separated columns (default: all)")
    query.add_argument("--format", choices=FORMATS, default="table",
                       help="output format (default: table; parquet needs --output; json is "
                            "strict: NaN and infinities are null)")
    query.add_argument("--limit", type=int, metavar="N", help="at most N records")
    query.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")

    columns = command("columns", cmd_columns, "list the columns with types and descriptions")
    columns.add_argument("path", help="export directory")
    columns.add_argument("--json", action="store_true", help="print them as JSON")

    from armory_datasets.convert import FORMATS as CONVERT_FORMATS

    convert = command("convert", cmd_convert, "write selected records as COCO, YOLO, ImageFolder or HF",
                      "Write the records matching --where in a training format, one dataset per "
                      "chain under OUT/{chain}; class ids from the manifest; --split by sample_index.")
    convert.add_argument("path", help="export directory")
    convert.add_argument("--format", choices=list(CONVERT_FORMATS), required=True,
                         help="coco, yolo (detection), imagefolder (classification), hf (both)")
    convert.add_argument("--out", required=True, metavar="DIR",
                         help="new output directory (must not exist, or be empty)")
    convert.add_argument("--where", metavar="TEXT", help="criteria text (default: every record)")
    convert.add_argument("--split", metavar="F,F", help="fractions, e.g. 0.8,0.2 (train, val[, test])")
    convert.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")

    app = command("app", cmd_app, "serve the export in the FiftyOne App (headless)",
                  "Start the FiftyOne App server on the export's dataset (rebuilt from the "
                  "directory if this database lacks it), print its URL and serve until Ctrl-C. "
                  "A busy port is refused.")
    app.add_argument("path", nargs="?", help="export directory")
    app.add_argument("--list", action="store_true",
                     help="list the URLs, datasets and exports being served, then exit")
    app.add_argument("--where", metavar="TEXT", help="show only records matching these criteria")
    app.add_argument("--port", type=int, default=5151, help="port (default: 5151)")
    app.add_argument("--address", default="localhost",
                     help="address to serve on (default: localhost; 0.0.0.0 for every interface)")

    demo = command("demo", cmd_demo, "run the digits classification example (train, export, query)")
    demo.add_argument("--export-dir", type=Path, metavar="DIR",
                      help="export directory, replaced if it exists "
                           "(default: exports/digits-classification)")
    demo.add_argument("--quick", action="store_true", help="2 epochs and 160 digits")

    pack = command("pack", cmd_pack, "write an export into one .tar.gz/.tgz/.zip archive")
    pack.add_argument("path", help="export directory")
    pack.add_argument("archive", help="archive to write (.tar.gz, .tgz or .zip)")
    pack.add_argument("--allow-incomplete", action="store_true",
                      help="pack an export whose status is still 'writing'")

    verify = command("verify", cmd_verify, "check an export's files; --repair recovers what it can",
                     "Check every table part, image, heatmap and manifest field against the "
                     "manifest and the schemas, and print each problem with its path and the fix. "
                     "--repair moves damaged or stray files into quarantine/ (it never deletes "
                     "data), lists the lost record keys and re-derives the counts; running the "
                     "export again then recomputes only the lost records. Exit code 1 when "
                     "problems remain.")
    verify.add_argument("path", help="export directory")
    verify.add_argument("--repair", action="store_true",
                        help="quarantine damaged/stray files, drop lost records, fix the manifest")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    commit = command("commit", cmd_commit, "commit an export written by several shards/ranks",
                     "Check that every writer of the directory finished and no record was "
                     "written twice, then list their parts in the manifest, build the FiftyOne "
                     "dataset and mark the export complete (EvaluationEngine(shard=...)).")
    commit.add_argument("path", help="export directory")

    partition = command("partition", cmd_partition,
                        "write a Hive-partitioned copy of the table (e.g. chain=fgsm/)",
                        "Write the table parts the manifest lists as a read-only Hive-partitioned "
                        "layout (OUT/chain=.../part-0.parquet), replacing an older one, so that "
                        "pyarrow, DuckDB, Polars, Spark and Ray skip the folders a criterion on "
                        "the partition columns excludes.")
    partition.add_argument("path", help="export directory")
    partition.add_argument("--by", default="chain", metavar="A,B",
                           help="comma-separated string or integer columns (default: chain)")
    partition.add_argument("--out", metavar="DIR",
                           help="layout directory (default: DIR/partitioned)")

    unpack = command("unpack", cmd_unpack, "extract an archive made by 'pack' and open it")
    unpack.add_argument("archive", help="archive made by 'pack'")
    unpack.add_argument("dest", help="new export directory (must not exist, or be empty)")
    return parser


def _caret(text: str, position: int) -> str:
    line = text.replace("\n", " ")
    return f"\n  {line}\n  {' ' * position}^"


def _hint(error: Exception) -> str:
    """A hint for the usual slips: Python's ``True``/``False``, ``=`` for ``==``.

    Example:
        >>> from armory_datasets.criteria import CriteriaSyntaxError
        >>> _hint(CriteriaSyntaxError("unexpected '='", "correct = false", 8))
        "; write == to compare (a single '=' is not an operator)"
    """
    column = getattr(error, "column", None)
    if column in ("True", "False"):
        return f" (booleans are lowercase: write {column.lower()})"
    text, position = getattr(error, "text", None), getattr(error, "position", None)
    if isinstance(text, str) and isinstance(position, int) and text[position:position + 1] == "=" \
            and text[position - 1:position] not in ("=", "<", ">", "!") \
            and text[position + 1:position + 2] != "=":
        return "; write == to compare (a single '=' is not an operator)"
    return ""


def _show_warning(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring).

    Example:
        >>> main(["info", "/nonexistent"])
        1
    """
    from armory_datasets.reading import (CriterionError, IncompleteExportWarning, SQLQueryError,
                                         UnknownColumnError)

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    debug = getattr(args, "debug", False)
    with warnings.catch_warnings():
        if not debug:
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", IncompleteExportWarning)
            warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except CriteriaSyntaxError as error:
            print(f"{PROG} {args.command}: error: bad criteria: {error.message} at position "
                  f"{error.position}{_hint(error)}{_caret(error.text, error.position)}",
                  file=sys.stderr)
            return 2
        except CriterionError as error:
            located = error.text is not None and error.position is not None
            caret = _caret(error.text, error.position) if located else ""
            message = str(error)
            if isinstance(error, UnknownColumnError):  # the hint before the list of columns
                named = f"unknown column {error.column!r}"
                message = message.replace(named, named + _hint(error), 1)
            else:
                message += _hint(error)
            print(f"{PROG} {args.command}: error: {message}{caret}", file=sys.stderr)
            return 2
        except (UsageError, SQLQueryError) as error:
            print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        except Exception as error:  # noqa: BLE001 -- the command line's last resort
            if debug:
                traceback.print_exc()
            message = " ".join(str(error).split()) or type(error).__name__
            print(f"{PROG} {args.command}: error: {type(error).__name__}: {message}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
