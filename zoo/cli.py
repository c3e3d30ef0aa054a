"""The `zoo` command: list, inspect and benchmark backbones.

Errors users can fix are ZooErrors, printed as one line (a traceback only with --debug).
TensorFlow is imported only by the commands that build models.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from zoo import config, distributed, download, plugin_manager, quiet, weights
from zoo.errors import ZooError, one_line
from zoo.progress import Progress as StepProgress
from zoo.progress import prefixed
from zoo.sources import hub as hub_variants
from zoo.sources import source_of
from zoo.tables import Column, dropped_note, fitted_table


class _OneLineErrors(TyperGroup):
    """Every command's errors as one line on stderr, never a traceback (unless --debug).

    Done here rather than in main() so `zoo` and typer's CliRunner behave the same:
    a ZooError (bad input) exits 2, an unexpected exception (a bug) exits 1.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own exits and usage errors
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C: one line (what was kept, how to go on), exit 130
            if _debug:
                raise
            err.print(f"[yellow]Interrupted{': ' + escape(str(exc)) if str(exc) else '.'}[/]", soft_wrap=True)
            raise typer.Exit(130) from None
        except ZooError as exc:
            if _debug:
                raise
            _exit_with("Error:", str(exc), 2)
        except BrokenPipeError:  # `zoo ... | head`: the reader has all it wanted
            _quiet_exit_on_closed_pipe()
        except Exception as exc:
            if _debug:
                raise
            if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # a path given, wherever it is met
                _exit_with("Error:", f"{exc.filename}: a name too long for the file system; give a shorter path", 2)
            _exit_with(
                "Unexpected error:", f"{one_line(exc)} (rerun with --debug for the traceback, and please report it)", 1
            )


def _exit_with(label: str, message: str, code: int) -> NoReturn:
    """The one line an error ends a command with (the message as it is, never read as markup)."""
    err.print(f"[red]{label}[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


#: The environment variables zoo reads, for `zoo --help`.
ENVIRONMENT = {
    "ZOO_PLUGINS": "plugin files or folders to load too, separated by ':'",
    "ZOO_LOAD_PLUGINS": "load only these plugins (comma-separated names)",
    "ZOO_DISABLE_PLUGINS": "skip these plugins (comma-separated names)",
    "ZOO_CACHE_DIR": "zoo's cache folder (default ~/.cache/zoo)",
    "ZOO_WEIGHTS_DIR": "a folder of weights files, looked in before the Keras cache",
    "ZOO_MIRROR": "a base URL to download weights from first",
    "ZOO_DOWNLOAD_TIMEOUT": "seconds a download may wait on the server",
    "KERAS_HOME": "Keras' folder; weights are cached in its models/",
    "TFHUB_CACHE_DIR": "where TF Hub models are cached",
}

app = typer.Typer(
    cls=_OneLineErrors,
    help="Which pretrained backbone is best for my data, and at what cost?",
    epilog="Exit codes: 0 done; 1 a backbone failed, or an unexpected error (a bug: please report it); "
    "2 bad input or usage, with one line saying how to fix it; 130 interrupted (Ctrl-C).\n\nEnvironment variables:\n\n"
    + "\n\n".join(f"{name}: {text}" for name, text in ENVIRONMENT.items()),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Piped output is never fitted, cut or wrapped: a table at its full width, each line whole, in
# logs and files (at a fixed 250 columns, a long ensemble name squeezed other cells to `…`).
PIPE_WIDTH = 100_000
out = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)
_debug = False
#: `--plugin PATH`, taken before the command (`zoo --plugin X list`) and after it (`zoo list --plugin X`).
PLUGIN_OPTION = typer.Option([], "--plugin", help="Load a plugin file or folder too (repeatable).")


def _add_plugins(paths: list[Path]) -> None:
    for path in paths:
        plugin_manager.add_plugin_path(str(path))


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"zoo {version('zoo')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    plugin: list[Path] = PLUGIN_OPTION,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks, and TensorFlow's own log."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print zoo's version."),
) -> None:
    global _debug
    _debug = debug
    if not debug:  # TensorFlow's C++ log (oneDNN notices, decoder complaints) is noise to users
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _add_plugins(plugin)


def _catalog_rows() -> list[dict]:
    rows = []
    for spec in plugin_manager.catalog().backbones.values():
        described = weights.describe(spec)
        rows.append(
            {**spec.to_dict(), "weights_status": described["status"], "weights_fetch_from": described["fetch_from"]}
        )
    return rows


def _warn_broken() -> None:
    catalog = plugin_manager.catalog()
    working = {info.name for info in catalog.plugins if not info.error}
    for info in catalog.plugins:
        if info.error:
            if _debug:
                err.print(info.traceback, markup=False, highlight=False, end="")
            err.print(
                f"[yellow]plugin {escape(info.name)} is broken: {escape(info.error)}; "
                f"{escape(info.how_to_fix(info.name in working))}[/]",
                soft_wrap=True,
            )
    for variable, names in catalog.unmatched.items():
        err.print(
            f"[yellow]{variable} names no installed plugin {escape(', '.join(names))}; `zoo plugins` lists them[/]",
            soft_wrap=True,
        )
    for name, claimants in catalog.conflicts.items():
        err.print(
            f"[yellow]backbone {escape(name)} is declared by {escape(' and '.join(claimants))}; left out until you "
            "disable one with ZOO_DISABLE_PLUGINS=<plugin>[/]",
            soft_wrap=True,
        )


#: `zoo list`'s columns; the least useful are dropped first to fit the terminal (zoo.tables).
_LIST_COLUMNS = [
    Column("name", "Name", 0, "left"),
    Column("weights", "Weights", 1, "left"),
    Column("input_size", "Input", 2),
    Column("params", "Params", 2),
    Column("source", "Source", 3, "left"),
    Column("plugin", "Plugin", 4, "left"),
    Column("family", "Family", 5, "left"),
    Column("preprocessing", "Preprocessing", 6, "left"),
    Column("weights_from", "Weights from", 7, "left"),
]


def _list_cells(row: dict) -> dict:
    state, _, origin = row["weights_status"].partition(" (")
    from zoo.report import readable_count

    weights_from = origin.rstrip(")") or row["weights_fetch_from"] or "-"  # where it is, else where to get it
    return {**row, "params": readable_count(row["params"]), "weights": state, "weights_from": weights_from}


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."), plugin: list[Path] = PLUGIN_OPTION
) -> None:
    """Every backbone the installed plugins provide (does not import TensorFlow).

    \b
    Examples:
      zoo list
      zoo list --json | jq -r '.[].name'
    """
    _add_plugins(plugin)
    rows = _catalog_rows()
    if as_json:
        out.print_json(json.dumps(rows))
    else:
        cells = [[escape(str(_list_cells(row)[column.key])) for column in _LIST_COLUMNS] for row in rows]
        table, dropped = fitted_table(_LIST_COLUMNS, cells, out.width if out.is_terminal else None, "zoo backbones")
        out.print(table)
        if dropped:
            err.print(
                f"[dim]{escape(dropped_note(dropped, 'see them with --json or zoo info NAME'))}[/]", soft_wrap=True
            )
    _warn_broken()


@app.command()
def info(
    name: str = typer.Argument(..., help="A backbone (see `zoo list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    plugin: list[Path] = PLUGIN_OPTION,
) -> None:
    """Everything zoo knows about one backbone.

    \b
    Examples:
      zoo info efficientnet_lite0
      zoo info mobilenet_v2 --json
    """
    _add_plugins(plugin)
    spec = plugin_manager.catalog().get(name)
    fields = {**spec.to_dict(), "weights_status": weights.status(spec)}
    if as_json:
        out.print_json(json.dumps(fields))
        return
    table = Table(title=escape(name), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in fields.items():
        table.add_row(key, escape(value if isinstance(value, str) else json.dumps(value)))
    out.print(table)


@app.command()
def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."), plugin: list[Path] = PLUGIN_OPTION
) -> None:
    """Installed plugins: name, version, hooks, and why a broken one failed.

    \b
    Examples:
      zoo plugins
      zoo --plugin my_plugin.py plugins --json
    """
    _add_plugins(plugin)
    infos = plugin_manager.catalog().plugins  # calling the hooks may mark more plugins broken
    if as_json:
        out.print_json(json.dumps([{k: v for k, v in vars(info).items() if k != "traceback"} for info in infos]))
        return
    table = Table(title="zoo plugins")
    for header in ("Name", "Version", "Origin", "Hooks", "Status"):
        table.add_column(header)
    for info in infos:
        status = f"[red]broken: {escape(info.error)}[/]" if info.error else "ok"
        table.add_row(
            escape(info.name), escape(info.version), escape(info.origin), escape(", ".join(info.hooks)), status
        )
    out.print(table)


@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(..., help="Plugin name, e.g. my-backbone."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create zoo-NAME/."),
) -> None:
    """Create an installable backbone plugin package, with its contract test, to start from.

    \b
    Examples:
      zoo new-plugin my-net && cd zoo-my-net && pip install -e '.\\[test]' && pytest
      zoo new-plugin my-net --dir ~/src
    """
    from zoo import scaffold

    files = scaffold.new_plugin(name, directory)
    for path in files:
        out.print(f"created {path}", markup=False, highlight=False)
    out.print(
        f"\nNext:\n  cd {_quote(files[0].parent)}\n  pip install -e '.[test]'\n  pytest\n"
        f"  zoo bench {scaffold.identifier(name)} --epochs 1\n"
        "Then make it yours: the spec and the builder are in the .py file (see docs/plugins.md).",
        markup=False,
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _bar(progress: Progress, task: TaskID) -> StepProgress:
    """zoo's progress callback, drawn as the bar `task`: its step as the description."""

    def report(step: str, done: int, total: int) -> None:
        # The bar reads its description as markup: a step names files (`downloading w[v2].h5`).
        progress.update(task, description=escape(step), completed=done, total=total or None)

    return report


_COLUMNS_OPTION = typer.Option(
    None,
    "--columns",
    help="Comma-separated table columns to show (backbone, top-1 and weights always are): "
    "top1_ci95, vs_best, top5, images_per_sec, latency_ms_p50, params, ... (all: results.md).",
)


def _default(name: str) -> str:
    """How `zoo bench --help` shows a default: the setting's, which the user may change."""
    return f"{json.dumps(config.SETTINGS[name].default)}, or setting {name} (zoo config)"


@app.command()
def bench(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Backbones to bench (see `zoo list`)."),
    all_backbones: bool = typer.Option(False, "--all", help="Bench every backbone."),
    source: str | None = typer.Option(
        None,
        "--source",
        help="hub or keras: each backbone's TF Hub or Keras variant.",
        show_default="the names as given; with --all, the Keras ones",
    ),
    data: Path | None = typer.Option(
        None, help="Folder with train/<class>/ and test/<class>/.", show_default="zoo's embedded sample dataset"
    ),
    epochs: int | None = typer.Option(None, help="Head training epochs.", show_default=_default("bench.epochs")),
    batch_size: int | None = typer.Option(None, help="Batch size.", show_default=_default("bench.batch_size")),
    learning_rate: float | None = typer.Option(
        None, help="Adam learning rate.", show_default=_default("bench.learning_rate")
    ),
    weights_mode: str = typer.Option(
        "auto", "--weights", help="auto, imagenet, none, or a weights file for one backbone."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Results folder.", show_default="zoo-results/<data folder name>"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print results.json instead of the table."),
    columns: str | None = _COLUMNS_OPTION,
    mode: str = typer.Option("features", help="features (frozen base) or finetune (then unfreeze the top)."),
    finetune_epochs: int = typer.Option(5, help="Fine-tuning epochs after the head's (with --mode finetune)."),
    unfreeze: int = typer.Option(10, help="Top base layers to unfreeze, BatchNorm excepted (with --mode finetune)."),
    augment: bool = typer.Option(False, "--augment", help="Random flip/rotation/zoom; runs end to end, no cache."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse and keep extracted features."),
    mirror: bool | None = typer.Option(
        None,
        "--mirror/--no-mirror",
        help="Also train the head on mirror images and score each test image with its mirror.",
        show_default=_default("bench.mirror"),
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Skip backbones already finished in --out with these settings."
    ),
    runtime: str | None = typer.Option(
        None,
        help="What extracts features: tf, tflite, or auto (TFLite on CPU where it converts, agrees with "
        "TensorFlow and is faster; see docs/bench.md).",
        show_default=_default("bench.runtime"),
    ),
    strategy: str = typer.Option("default", help="tf.distribute strategy: default, mirrored or multiworker."),
    worker_timeout: float = typer.Option(
        distributed.DEFAULT_TIMEOUT,
        "--worker-timeout",
        help="Seconds a multiworker step waits for the other workers before all stop (see docs/scale.md).",
    ),
    shard_text: str | None = typer.Option(
        None,
        "--shard",
        metavar="I/N",
        help="Bench only the I-th of N interleaved parts of the backbones, for one job of N (see docs/scale.md).",
    ),
    folds: int | None = typer.Option(
        None,
        help="k of the k-fold cross-validation on train/ behind val_top1 and the ensemble "
        "(default: 5; 0: none) [--mode features].",
    ),
    ensemble_size: int = typer.Option(3, help="Most backbones in the ensemble row, chosen on validation."),
    make_ensemble: bool = typer.Option(
        True, "--ensemble/--no-ensemble", help="Add the ensemble row after the backbones."
    ),
    plugin: list[Path] = PLUGIN_OPTION,
) -> None:
    """Benchmark backbones on one dataset and print the comparison table.

    \b
    Examples:
      zoo bench efficientnet_lite0 efficientnet_lite2 --data photos/ --out results/photos
      zoo bench --all --data photos/ --epochs 5 --no-mirror    # the course's recipe
      zoo bench --all --json > results.json                     # CI: the results document
    """
    _add_plugins(plugin)
    from zoo.bench import BenchSettings
    from zoo.data import load_dataset, skipped_summary
    from zoo.ensemble import validate_ensemble_size
    from zoo.report import checked_columns, ranked, read_results, results_lock
    from zoo.sample_data import sample_dataset
    from zoo.sweep import Shard

    if importlib.util.find_spec("tensorflow") is None:  # an extra: users choose its build
        raise ZooError("TensorFlow is not installed; pip install 'zoo[cpu]' (or 'zoo[gpu]')")
    _import_tensorflow()
    download.timeout_seconds()  # a bad ZOO_DOWNLOAD_TIMEOUT is said now, not as a silent fallback later
    settings = BenchSettings.from_config(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weights=weights_mode,
        mode=mode,
        finetune_epochs=finetune_epochs,
        unfreeze=unfreeze,
        augment=augment,
        strategy=strategy,
        cache=cache,
        mirror=mirror,
        folds=folds,
        runtime=runtime,
    )
    settings.validate()
    validate_ensemble_size(ensemble_size)
    checked_columns(_chosen_columns(columns))  # a typo is said now, not after the bench
    ensemble_size = ensemble_size if make_ensemble else 0
    if not worker_timeout > 0:
        raise ZooError(f"--worker-timeout {worker_timeout}: it must be above 0 seconds")
    catalog = plugin_manager.catalog()
    if source not in (None, "hub", "keras"):
        raise ZooError(f"--source {source}: use hub or keras")
    if all_backbones:
        specs = hub_variants.select(list(catalog.backbones.values()), source)
    elif names:
        named = [catalog.get(hub_variants.variant_name(name, source)) for name in names]
        specs = list({spec.name: spec for spec in named}.values())  # a name given twice is benched once
    else:
        raise ZooError("name the backbones to bench (see `zoo list`) or use --all")
    shard = Shard.parse(shard_text) if shard_text is not None else None
    if shard is not None:
        specs = shard.select(specs)
    weights.validate_weights_mode(settings.weights, len(specs))
    _warn_broken()
    cluster = distributed.make_strategy(settings.strategy, worker_timeout)  # before any other TF work
    chief = distributed.is_chief(cluster)
    if data is None:
        data = sample_dataset()
        err.print(
            "[cyan]No --data given: using zoo's embedded sample dataset (10 classes of shapes in clutter). "
            "Point --data at a folder with train/<class>/ and test/<class>/ for real answers.[/]"
        )
    if out_dir is None:
        out_dir = Path("zoo-results") / Path(data).expanduser().resolve().name
        if shard is not None:
            out_dir /= shard.folder_name()
    # Held until the command ends: an unwritable or busy --out fails now, before any work.
    if chief:  # the other workers write nothing into --out
        ctx.with_resource(results_lock(out_dir))
        if resume and (out_dir / "results.json").is_file():
            read_results(out_dir)  # damaged rows are refused now, not after the image check
    with _progress() as progress:
        task = progress.add_task("checking images", total=None)
        dataset = load_dataset(data, _bar(progress, task))
    if dataset.skipped:
        err.print(f"[yellow]{escape(skipped_summary(dataset))}[/]", highlight=False, soft_wrap=True)
    nested = f" ({dataset.nested} of them in subfolders of class folders)" if dataset.nested else ""
    err.print(
        f"{len(dataset.class_names)} classes, {len(dataset.train)} train and "
        f"{len(dataset.test)} test images from {dataset.root}{nested}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )

    if augment:
        err.print(
            "[cyan]--augment: every epoch shows the base new images, so features are not cached; "
            "training runs end to end (slower).[/]"
        )
    rows = bench_with_progress(
        specs, dataset, settings, out_dir, resume=resume, shard=shard, strategy=cluster, ensemble_size=ensemble_size
    )
    if not chief:
        err.print(f"Worker {distributed.worker(cluster)[0]} done; the chief writes the results")
        raise typer.Exit(int(any(row["status"] != "ok" for row in rows)))
    _print_results(read_results(out_dir), f"zoo bench: {dataset.root.name}", as_json, columns)
    _warn_random(rows)
    _warn_params(specs, rows)
    err.print(
        escape(
            f"Results written to {out_dir}/: results.json, .csv, .md, accuracy_vs_speed.png, confusion_*.png, "
            f"tensorboard/, models/ (zoo report {_quote(out_dir)} --html for one page to share)"
        ),
        highlight=False,
    )
    best = next((row for row in ranked(rows) if row["status"] == "ok" and row.get("classifier")), None)
    if best is not None:
        err.print(
            f"Best: {best['backbone']} ({best['top1']:.1%} top-1{_as_exported(best)}). Export it with: "
            f"zoo export {_quote(out_dir)} {_quote(best['backbone'])} --format tflite",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if any(row["status"] != "ok" for row in rows):
        raise typer.Exit(1)


def _as_exported(row: dict) -> str:
    """What the exported classifier scores, where that is not the row's top-1 (scored with --mirror)."""
    alone = row.get("top1_one_view")
    return "" if alone is None or alone == row["top1"] else f"; {alone:.1%} as exported, seeing each image alone"


def _quote(word: Path | str) -> str:
    import shlex

    return shlex.quote(str(word))


def bench_with_progress(
    specs,
    dataset,
    settings,
    out_dir: Path,
    resume: bool = False,
    classifiers=None,
    shard=None,
    strategy=None,
    ensemble_size: int = 3,
) -> list[dict]:
    """run_bench with the progress bars `zoo bench` shows (zoo.bench in notebooks too)."""
    from zoo.bench import run_bench

    with _progress() as progress:
        overall = progress.add_task("backbones", total=len(specs))
        in_flight: list[TaskID] = []  # the bar of the backbone being benched

        def report(step: str, done: int, total: int) -> None:
            if not in_flight:
                in_flight.append(progress.add_task(escape(step), total=None))
            _bar(progress, in_flight[0])(step, done, total)

        def finished(row: dict, reused: bool) -> None:
            if in_flight:
                progress.remove_task(in_flight.pop())
            progress.advance(overall)
            if row.get("feature_cache_note"):
                err.print(
                    f"[yellow]{escape(row['backbone'])}: {escape(row['feature_cache_note'])}[/]",
                    highlight=False,
                    soft_wrap=True,
                )
            done = int(progress.tasks[overall].completed)
            # One line per backbone, so a piped log (CI) shows the bench moving on.
            err.print(f"[{done}/{len(specs)}] {escape(_finished_line(row, reused))}", highlight=False, soft_wrap=True)

        try:
            return run_bench(
                specs,
                dataset,
                settings,
                out_dir,
                resume=resume,
                progress=report,
                finished=finished,
                classifiers=classifiers,
                shard=shard,
                strategy=strategy,
                ensemble_size=ensemble_size,
                note=lambda line: err.print(escape(line), style="cyan", highlight=False, soft_wrap=True),
            )
        except KeyboardInterrupt:
            if not (out_dir / "results.json").is_file():
                raise KeyboardInterrupt("no backbone had finished, so no results were written") from None
            raise KeyboardInterrupt(
                f"the backbones finished so far are in {out_dir}/results.json; "
                "run the same command with --resume to bench the rest"
            ) from None


def _finished_line(row: dict, reused: bool) -> str:
    """`mobilenet_v2 top-1 78.2 % 41 s, features by tflite (TFLite 1.83x TensorFlow's speed)`, or
    why it failed, or that it was kept."""
    if reused:
        return f"{row['backbone']}: finished before with these settings (--resume), kept"
    if row["status"] != "ok":
        return f"{row['backbone']} failed: {row['error']}"
    weights = " (random weights)" if row.get("weights") == "random" else ""
    line = f"{row['backbone']} top-1 {row['top1'] * 100:.1f} %{weights} {row['total_seconds']:.0f} s"
    if row.get("runtime"):  # None when every feature came from the cache
        line += f", features by {row['runtime']}" + (f" ({row['runtime_note']})" if row.get("runtime_note") else "")
    return line


def _import_tensorflow() -> None:
    """Import TensorFlow now, with its C++ start-up notices (oneDNN, absl), which ignore
    TF_CPP_MIN_LOG_LEVEL, sent to /dev/null unless --debug."""
    if _debug or "tensorflow" in sys.modules:
        importlib.import_module("tensorflow")
        return
    with quiet.native_stderr():
        importlib.import_module("tensorflow")


def _warn_params(specs: list, rows: list[dict]) -> None:
    """Say which spec declares a parameter count its built model does not have (zoo list shows the declared one)."""
    built = {row["backbone"]: row.get("params") for row in rows if row["status"] == "ok"}
    for spec in specs:
        count = built.get(spec.name)
        if count is not None and count != spec.params:
            err.print(
                f"[yellow]{escape(spec.name)}: its spec declares params={spec.params:,}, the built model has "
                f"{count:,}; plugin {escape(spec.plugin)} should set params={count}[/]",
                soft_wrap=True,
            )


def _warn_random(rows: list[dict]) -> None:
    """Name the backbones that ran with random weights, by why: none declared, none asked for, none found."""
    from zoo.report import random_weights

    groups: dict[str, list[str]] = {}
    for name in random_weights([row for row in rows if row.get("kind") != "ensemble"]):  # its members are named
        note = next(row.get("weights_note", "") for row in rows if row["backbone"] == name)
        if note.endswith("declares no pretrained weights"):
            why = "their specs declare no pretrained weights"
        elif note == "asked for no weights":
            why = "--weights none"
        else:
            why = "no usable pretrained file: weights_note says why, `zoo weights list` how to get one"
        groups.setdefault(why, []).append(name)
    for why, names in groups.items():
        err.print(
            f"[bold red]RANDOM weights ({escape(why)}): {escape(', '.join(names))}. "
            "Their accuracy says nothing about transfer learning.[/]"
        )


def _chosen_columns(columns: str | None) -> list[str] | None:
    return [name for name in columns.split(",") if name.strip()] if columns else None


def _print_results(results: dict, title: str, as_json: bool, columns: str | None) -> None:
    """The comparison table fitted to the terminal (or the results.json document), the
    statistics in words, then one line per failed backbone."""
    from zoo.report import results_table, to_json, with_statistics

    results = with_statistics(results)
    if as_json:
        out.file.write(to_json(results) + "\n")
    else:
        chosen = _chosen_columns(columns)
        table, note = results_table(
            results, title=escape(title), width=out.width if out.is_terminal else None, chosen=chosen
        )
        out.print(table)
        if note:
            err.print(f"[dim]{escape(note)}[/]", soft_wrap=True, highlight=False)
        if results["statistics"]["summary"]:
            out.print(escape(results["statistics"]["summary"]), soft_wrap=True, highlight=False)
    for row in results["backbones"]:
        if row["status"] != "ok":
            if _debug and row.get("traceback"):
                err.print(row["traceback"], markup=False, highlight=False, end="")
            err.print(
                f"[red]{escape(str(row['backbone']))} failed: {escape(str(row['error']))}[/]",
                highlight=False,
                soft_wrap=True,
            )


@app.command("report")
def report_command(
    folders: list[Path] = typer.Argument(..., help="A bench's --out folder, with results.json (several with --merge)."),
    merge: bool = typer.Option(False, "--merge", help="Combine the folders' results (a sweep's shards) into --out."),
    merged_dir: Path | None = typer.Option(None, "--out", help="Where --merge writes the combined results."),
    as_json: bool = typer.Option(False, "--json", help="Print results.json (statistics included); write nothing."),
    columns: str | None = _COLUMNS_OPTION,
    html: bool = typer.Option(
        False, "--html", help="Also write report.html: one self-contained page to open or share."
    ),
) -> None:
    """Re-render the table, results.md/.csv and the plots from a saved results.json.

    No TensorFlow is imported. --merge combines results folders (a sweep's shards) first.

    \b
    Examples:
      zoo report zoo-results/food --html     # then open zoo-results/food/report.html
      zoo report zoo-results/food --json | jq .statistics.summary
      zoo report --merge sweep/shard-* --out sweep/all
    """
    from zoo import ensemble
    from zoo.report import read_results, results_lock, write_html, write_reports, write_results
    from zoo.sweep import merge as merge_folders
    from zoo.sweep import prepare_merged_out

    if merge:
        if merged_dir is None:
            raise ZooError("--merge needs --out MERGED, the folder for the combined results")
        rows, meta = merge_folders(folders)
        with results_lock(merged_dir):
            prepare_merged_out(merged_dir, folders)
            rows, no_ensemble = ensemble.merged(rows, meta, merged_dir, folders)
            if no_ensemble:
                meta["no_ensemble"] = no_ensemble
                err.print(f"No ensemble row: {escape(no_ensemble)}.")
            write_results(merged_dir, rows, meta)
        if meta["missing_shards"]:
            missing = meta["missing_shards"]
            shards = f"Shards {', '.join(missing)} are" if len(missing) > 1 else f"Shard {missing[0]} is"
            err.print(f"[yellow]{shards} missing from the merge[/]")
        if meta["mixed_sweeps"]:
            err.print(
                f"[yellow]Shards {', '.join(meta['mixed_sweeps'])} come from sweeps of different sizes, so some "
                "backbones may be in none of them: bench every shard with the same --shard I/N count[/]"
            )
        out_dir = merged_dir
    elif len(folders) != 1 or merged_dir is not None:
        raise ZooError("give one results folder, or combine several with --merge DIR... --out MERGED")
    else:
        out_dir = folders[0]
    results = read_results(out_dir)
    name = Path(results.get("dataset", {}).get("root", str(out_dir))).name
    if not as_json:
        write_reports(out_dir, results)
        if html:
            write_html(out_dir, results)
    _print_results(results, f"zoo bench: {name}", as_json, columns)
    if not as_json:
        written = "results.md, results.csv, the plots" + (" and report.html" if html else "")
        err.print(f"{'Wrote' if merge else 'Rewrote'} {out_dir}/: {written}", markup=False, highlight=False)


@app.command("export")
def export_command(
    source: Path = typer.Argument(
        ..., help="A bench's --out folder, a saved models/BACKBONE folder, or a .keras file."
    ),
    backbone: str | None = typer.Argument(None, help="Which row of the bench to export (default: the best)."),
    fmt: str = typer.Option("keras", "--format", help="keras, savedmodel or tflite."),
    quantize: str = typer.Option("none", "--quantize", help="TFLite only: none, float16 or int8 (full-integer)."),
    data: Path | None = typer.Option(
        None,
        help="Images for int8 calibration: a dataset (its train/) or any folder of images "
        "(default: the bench's dataset).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Export folder (default: SOURCE/export/BACKBONE-FORMAT[-QUANTIZE] for a bench's folder, "
        "else ./zoo-export/BACKBONE-FORMAT[-QUANTIZE]).",
    ),
    plugin: list[Path] = PLUGIN_OPTION,
) -> None:
    """Export a trained classifier: it takes raw 0..255 RGB images; labels.txt and zoo.json go beside.

    \b
    Examples:
      zoo export zoo-results/food --format tflite            # the best row
      zoo export zoo-results/food mobilenet_v2 --format tflite --quantize int8
      zoo export zoo-results/food ensemble --format keras --out ship/
      zoo export zoo-results/food my_net --plugin my_plugin.py   # benched from a plugin file
    """
    _add_plugins(plugin)
    _import_tensorflow()
    from zoo import export, predict

    if fmt not in export.FORMATS:
        raise ZooError(f"--format {fmt}: use one of {', '.join(export.FORMATS)}")
    from zoo.tflite import QUANTIZE

    if quantize not in QUANTIZE:
        raise ZooError(f"--quantize {quantize}: use one of {', '.join(QUANTIZE)}")
    if data is not None and quantize != "int8":
        raise ZooError(f"--data {data} is the int8 calibration images; add --format tflite --quantize int8, or drop it")
    if not source.exists():
        raise ZooError(
            f"{source}: no such file or folder; give a bench's --out folder, one of its models/BACKBONE "
            "folders, or a .keras file"
        )
    results = source if (source / "results.json").is_file() else None
    if results is None and backbone is not None:
        raise ZooError(
            f"{source} is not a bench's --out folder (no results.json), so BACKBONE {backbone} means nothing there"
        )
    with err.status("loading the classifier"):
        folder = export.trained_folder(source, backbone) if results is not None else source
        classifier = predict.load(folder)
    if classifier.model is None or classifier.meta is None:
        raise ZooError(f"{source} is not a Keras classifier zoo saved; give a bench folder or a zoo .keras export")
    meta = classifier.meta
    calibration = None
    if quantize == "int8":
        if data is None and meta.get("dataset"):
            data = Path(meta["dataset"])
            if not data.is_dir():
                raise ZooError(
                    f"--quantize int8 calibrates on the bench's training images, but {data} is not there; "
                    "give --data DIR"
                )
        if data is None:
            raise ZooError("--quantize int8 calibrates on training images: give --data DIR")
        with err.status(escape(f"reading calibration images from {data}")):
            calibration = export.calibration_batches(data, meta)
    target = out or export.default_out(meta, fmt, quantize, results)
    with err.status(
        escape(f"exporting {meta['backbone']} as {fmt}" + (f" ({quantize})" if quantize != "none" else ""))
    ):
        path = export.export(classifier.model, meta, fmt, target, quantize, calibration)
    err.print(
        f"Exported {meta['backbone']} to {path} (+ {export.LABELS}, {export.METADATA}). "
        f"Try it: zoo predict {_quote(path)} IMAGE",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@app.command("predict")
def predict_command(
    model: Path = typer.Argument(..., help="A .keras file, a SavedModel folder, a .tflite file, or an export folder."),
    images: list[Path] = typer.Argument(..., help="Image files or folders of them."),
    top_k: int = typer.Option(3, "--top-k", help="Classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write the predictions to this CSV file."),
    plugin: list[Path] = PLUGIN_OPTION,
) -> None:
    """Classify images with an exported (or bench-saved) classifier.

    \b
    Examples:
      zoo predict ship/ photo.jpg
      zoo predict zoo-results/food/models/efficientnet_lite0 photos/ --top-k 1 --csv out.csv
      zoo predict zoo-results/food/models/my_net photos/ --plugin my_plugin.py
    """
    _add_plugins(plugin)
    _import_tensorflow()
    from zoo import export, predict
    from zoo.data import shown_path, skipped_line

    if top_k < 1:
        raise ZooError(f"--top-k {top_k}: it must be 1 or more")
    predict.image_files(list(images))  # a path that does not exist is said before the model loads
    if csv_file is not None:
        _check_csv_path(csv_file)
    with err.status(escape(f"loading {model}")):
        classifier = predict.load(model)
    if classifier.meta is None:
        indexes = [str(index) for index in range(len(classifier.class_names))]
        named = "shown by index" if classifier.class_names == indexes else "named by the labels.txt beside it"
        beside = classifier.path.parent / export.METADATA
        has = "a zoo.json beside it for another model" if beside.is_file() else "no zoo.json beside it"
        err.print(f"[yellow]{escape(str(model))} has {has}: classes are {named}.[/]")
    with _progress() as progress:
        task = progress.add_task("checking images", total=None)
        predictions, skipped = predict.predict(classifier, list(images), top_k, _bar(progress, task))
    if as_json:
        rows = [{"file": p.file, "top": [{"class": c, "probability": pr} for c, pr in p.top]} for p in predictions]
        out.print_json(json.dumps({"predictions": rows, "skipped": skipped}))
    else:
        table = Table(title=escape(f"zoo predict: {model.name}"))
        table.add_column("file", overflow="fold")
        for rank in range(1, len(predictions[0].top) + 1):
            table.add_column(f"#{rank}")
        for prediction in predictions:
            table.add_row(escape(shown_path(prediction.file)), *(f"{escape(c)} {p:.1%}" for c, p in prediction.top))
        out.print(table)
    if skipped:
        err.print(f"[yellow]{escape(skipped_line(skipped.items()))}[/]", highlight=False, soft_wrap=True)
    if csv_file is not None:  # after the predictions are shown: a CSV that cannot be written loses none
        _write_predictions_csv(csv_file, predictions)


def _write_predictions_csv(path: Path, predictions) -> None:
    import csv
    import io

    from zoo import atomic
    from zoo.report import csv_cell

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    k = len(predictions[0].top)
    writer.writerow(["file", *(f"{field}{rank}" for rank in range(1, k + 1) for field in ("class", "probability"))])
    for prediction in predictions:  # a file `=x.jpg` or a class `+1` must not run as a spreadsheet formula
        writer.writerow(map(csv_cell, [prediction.file, *(value for pair in prediction.top for value in pair)]))
    # A file name that is not UTF-8 is written as its own bytes, as the file system holds it.
    text = buffer.getvalue().encode("utf-8", "surrogateescape")
    try:
        if _is_stream(path):
            with open(path, "wb") as stream:
                stream.write(text)
        else:  # through a link, the file it names is replaced, not the link
            with atomic.atomic_path(path.resolve()) as temporary:
                temporary.write_bytes(text)
    except OSError as exc:
        raise ZooError(f"--csv {path}: cannot write it ({exc.strerror or exc}); give a writable path") from None


def _check_csv_path(path: Path) -> None:
    """A `--csv` that cannot be written, said before the model loads and the images are predicted."""
    try:
        writable = not path.is_dir() and os.access(path if _is_stream(path) else path.resolve().parent, os.W_OK)
    except OSError as exc:  # a name too long for the file system, say
        raise ZooError(f"--csv {path}: cannot write it ({exc.strerror or exc}); give a writable path") from None
    if not writable:
        raise ZooError(
            f"--csv {path}: a folder, or in a folder that does not exist or is not writable; give a file path"
        )


def _is_stream(path: Path) -> bool:
    """Whether `--csv PATH` names a device or a pipe (/dev/stdout, a FIFO): written into as it is,
    where replacing it atomically, as a file is, would put a file in its place."""
    return path.exists() and not path.is_file() and not path.is_dir()


cache_app = typer.Typer(help="The feature cache: what the bench has extracted once and reuses.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("list")
def cache_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Cached features and converted TFLite extractors, half-written files too.

    Each feature entry shows its backbone, split, dataset folder, images, size and date.

    \b
    Examples:
      zoo cache list
      zoo cache list --json | jq '.entries[] | .backbone'
    """
    from zoo import features

    entries, models, partials = features.entries(), features.models(), features.partials()
    if as_json:
        out.print_json(json.dumps({"entries": entries, "models": models, "partial": partials}))
        return
    table = Table(title=escape(f"zoo feature cache ({features.cache_dir('features', create=False)})"))
    for header in ("Backbone", "Split", "Dataset", "Images", "Dim", "MB", "Created"):
        table.add_column(header, overflow="fold")
    # A converted extractor (`model`) is of no split and for any dataset.
    for model, entry in [(False, entry) for entry in entries] + [(True, entry) for entry in models]:
        table.add_row(
            escape(str(entry.get("backbone", "?"))),
            "TFLite model" if model else escape(str(entry.get("split", "?"))),
            f"[red]damaged: {escape(entry['damaged'])}[/]"
            if "damaged" in entry
            else "any"
            if model
            else escape(str(entry.get("dataset") or "?")),
            "-" if model else str(entry.get("count", "?")),
            "-" if model else str(entry.get("dim", "?")),
            f"{entry['bytes'] / 2**20:.1f}",
            _date(entry["created"]),
        )
    out.print(table)
    size = sum(entry["bytes"] for entry in entries + models) / 2**20
    out.print(
        f"{_count(len(entries), 'entry', 'entries')}, {_count(len(models), 'converted TFLite model')}, {size:.1f} MB"
    )
    for item in partials:
        state = "being written" if item["running"] else "left by a killed run; the next bench removes it"
        out.print(
            f"partial: {escape(item['path'])} ({item['bytes'] / 2**20:.1f} MB, pid {item['pid']}, {state})",
            highlight=False,
            soft_wrap=True,
        )


def _count(number: int, thing: str, things: str = "") -> str:
    """`1 entry`, `2 entries`."""
    return f"{number} {thing if number == 1 else things or thing + 's'}"


def _date(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """`30d`, `12h`, `2w`, `90m`, `45s` in seconds, or a ZooError that shows the form."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise ZooError(f"--older-than {text}: give a number and a unit (s, m, h, d or w), e.g. 30d")
    return float(match[1]) * _UNITS[match[2]]


@cache_app.command("clear")
def cache_clear(
    backbone: str | None = typer.Option(None, help="Only this backbone's features."),
    dataset: Path | None = typer.Option(None, help="Only the features of this dataset folder."),
    older_than: str | None = typer.Option(None, help="Only entries older than this, e.g. 30d, 12h, 2w."),
) -> None:
    """Delete cached features and converted TFLite extractors: all, or those the options select.

    The next bench extracts (and converts) them again.

    \b
    Examples:
      zoo cache clear --older-than 30d
      zoo cache clear --backbone mobilenet_v2 --dataset data/food
    """
    from zoo import features

    age = parse_age(older_than) if older_than is not None else None
    removed, freed = features.clear(backbone, dataset, age)
    out.print(f"removed {removed} files, {freed / 2**20:.1f} MB")
    if removed == 0 and (backbone or dataset):  # a typo, or another spelling of the folder?
        records = features.entries() + features.models()
        folder = dataset and features.dataset_name(dataset)
        for option, given, field in (("--backbone", backbone, "backbone"), ("--dataset", folder, "dataset")):
            cached = sorted({record[field] for record in records if isinstance(record.get(field), str)})
            if given and given not in cached:
                listed = ", ".join(cached) or "none"
                out.print(
                    f"nothing cached is for {option} {given}; cached: {listed} (zoo cache list)",
                    markup=False,
                    highlight=False,
                )


@app.command("config")
def config_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every user setting: its effective value and where it came from (default, file, env).

    \b
    Examples:
      zoo config
      ZOO_BENCH_EPOCHS=5 zoo config --json
    """
    rows = config.effective()
    if as_json:
        out.print_json(json.dumps({"file": str(config.path()), "settings": rows}))
        return
    file = config.path()
    out.print(f"config file: {file}{'' if file.is_file() else ' (not created yet)'}", markup=False, highlight=False)
    table = Table(title="zoo settings")
    for header in ("Setting", "Value", "Origin", "Variable", "What it does"):
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(
            *(escape(text) for text in (row["name"], json.dumps(row["value"]), row["origin"], row["env"], row["doc"]))
        )
    out.print(table)


weights_app = typer.Typer(
    help="Pretrained weights: where each backbone's come from; fetch them ahead; verify them.\n\n"
    "\b\nExamples:\n  zoo weights list\n  zoo weights fetch --all    # on a connected machine, "
    "then copy ~/.keras/models across\n  zoo weights verify",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def weights_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."), plugin: list[Path] = PLUGIN_OPTION
) -> None:
    """Every backbone's weights: file or hub handle, pinned check, and where they would come from."""
    _add_plugins(plugin)
    _warn_broken()  # its backbones are missing from the list: say why
    rows = [weights.describe(spec) for spec in plugin_manager.catalog().backbones.values()]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="zoo weights")
    for header in ("Backbone", "Weights", "Check", "Status", "Path or URL"):
        table.add_column(header, overflow="fold")
    for row in rows:
        cells = (row["backbone"], row["weights"], row["check"], row["status"], row["path"] or row["fetch_from"])
        table.add_row(*(escape(str(cell)) for cell in cells))
    out.print(table)


def _download_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


@weights_app.command("fetch")
def weights_fetch(
    names: list[str] = typer.Argument(None, help="Backbones whose weights to download."),
    all_backbones: bool = typer.Option(False, "--all", help="Every backbone, hub variants too."),
    plugin: list[Path] = PLUGIN_OPTION,
) -> None:
    """Download weights ahead (e.g. on a connected machine, then copy the caches over)."""
    _add_plugins(plugin)
    _warn_broken()
    catalog = plugin_manager.catalog()
    if all_backbones:
        specs = list(catalog.backbones.values())
    elif names:
        specs = [catalog.get(name) for name in names]
    else:
        raise ZooError("name the backbones whose weights to fetch (see `zoo weights list`) or use --all")
    failed = 0
    with _download_progress() as progress:
        for spec in specs:
            if not source_of(spec).has_pretrained(spec):  # named or not, say so: silence reads as done
                err.print(
                    f"[dim]{escape(spec.name)}[/]: no pretrained weights to fetch", highlight=False, soft_wrap=True
                )
                continue
            task = progress.add_task(escape(spec.name), total=None)
            try:
                resolved = weights.resolve(spec, "imagenet", prefixed(_bar(progress, task), spec.name))
                err.print(f"[green]{escape(spec.name)}[/]: {escape(resolved.note)}", highlight=False, soft_wrap=True)
            except ZooError as exc:
                failed += 1
                err.print(f"[red]{escape(spec.name)}[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
            progress.remove_task(task)
    if failed:
        raise typer.Exit(1)


@weights_app.command("verify")
def weights_verify(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."), plugin: list[Path] = PLUGIN_OPTION
) -> None:
    """Re-check every weights file on disk against its pinned size and hash (exit 1 if one is bad)."""
    _add_plugins(plugin)
    _warn_broken()
    checks: list[dict[str, Any]] = []
    for spec in plugin_manager.catalog().backbones.values():
        ok, detail = weights.verify_local(spec)
        checks.append({"backbone": spec.name, "ok": ok, "detail": detail})
    if as_json:
        out.print_json(json.dumps(checks))
    else:
        for check in checks:
            mark = {True: "[green]ok[/]", False: "[red]BAD[/]", None: "[dim]-[/]"}[check["ok"]]
            out.print(f"{mark} {escape(check['backbone'])}: {escape(check['detail'])}", highlight=False, soft_wrap=True)
    if any(check["ok"] is False for check in checks):
        raise typer.Exit(1)


def _quiet_exit_on_closed_pipe() -> NoReturn:
    """End as a Unix tool does when its reader closed the pipe: silently, with 141 (SIGPIPE),
    and with stdout pointed at /dev/null so that Python's last flush does not complain again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)


def main() -> None:
    """Console-script entry point (errors are turned into one line by _OneLineErrors)."""
    try:
        app()
    except BrokenPipeError:  # raised where no command runs: `zoo --help | head`
        _quiet_exit_on_closed_pipe()
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted.[/]")
        sys.exit(130)
    except SystemExit as done:
        if distributed.joined:  # TensorFlow's collective threads could keep the process alive
            distributed.exit_now(done.code if isinstance(done.code, int) else 1)
        raise
