"""A sweep spread over jobs: `zoo bench --shard I/N` and `zoo report --merge`.

A scheduler (a Slurm job array, a Kubernetes indexed Job) starts N copies of one command that
differ only in I. Each benches every N-th backbone in name order, so the N jobs cover each
backbone exactly once without talking to each other, and writes its own results folder. Merging
the folders refuses rows measured on another dataset or with other settings: a table that mixes
them would compare nothing.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zoo.ensemble import DEFAULT_SIZE, KIND
from zoo.errors import ZooError
from zoo.settings import result_settings

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """The `index`-th (from 1) of `count` interleaved parts of a sweep."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            raise ZooError(f"--shard {text}: give I/N with 1 <= I <= N, e.g. --shard 2/4 for the second of four jobs")
        return cls(int(match[1]), int(match[2]))

    def select(self, items: Sequence[T], name=lambda item: item.name) -> list[T]:
        """This shard's items: every count-th in name order, starting at the index-th."""
        if len(items) < self.count:
            raise ZooError(
                f"--shard {self}: {self.count} shards of only {len(items)} backbones would leave some "
                f"empty; use at most {len(items)} shards"
            )
        return sorted(items, key=name)[self.index - 1 :: self.count]

    def folder_name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def data_fingerprint(root: Path, files: Iterable[str]) -> str:
    """The dataset as any machine sees it: each file's path relative to `root` and its size.

    Shards may run on machines that hold their own copy of the data (other mount points, other
    mtimes), so unlike the cache key this leaves out absolute paths and times.
    """
    digest = hashlib.sha256()
    for name in files:
        path = Path(name)
        digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\n".encode(errors="surrogateescape"))
    return digest.hexdigest()[:16]


def _difference(first: dict, second: dict) -> str:
    """'key A vs B, ...' over the keys either has (one missing is None), or '' when they agree;
    long lists (the test labels) said by their lengths, so the line stays one line."""

    def shown(value: Any) -> str:
        return f"[{len(value)} values]" if isinstance(value, list) and len(repr(value)) > 60 else repr(value)

    keys = [key for key in {**first, **second} if first.get(key) != second.get(key)]
    return ", ".join(f"{key} {shown(first.get(key))} vs {shown(second.get(key))}" for key in keys)


def dataset_difference(first: dict | None, second: dict | None) -> str:
    """How the datasets two results files were benched on differ (wherever each folder is), or ''."""
    return _difference(*({k: v for k, v in (d or {}).items() if k != "root"} for d in (first, second)))


def settings_difference(first: dict, second: dict) -> str:
    """How two rows' (or a row's and a BenchSettings') settings that change results differ, or ''."""
    return _difference(result_settings(first), result_settings(second))


def merge(folders: Sequence[Path]) -> tuple[list[dict], dict]:
    """The rows and meta data of several results folders in one, each backbone once.

    Raises a ZooError naming the difference when a folder's dataset, zoo version or a row's
    settings differ from the first folder's, or when a folder is given twice or two hold the same backbone.
    """
    from zoo.report import provenance, read_results, running_bench

    given: dict[Path, Path] = {}
    for folder in folders:
        if folder.resolve() in given:
            spelled = given[folder.resolve()]
            also = "" if str(spelled) == str(folder) else f" (also as {spelled})"
            raise ZooError(f"{folder} is given twice{also}; give each folder to merge once")
        given[folder.resolve()] = folder
    for folder in folders:
        pid = running_bench(folder)
        if pid:  # its results.json holds only the backbones finished so far
            raise ZooError(
                f"{folder} is still being written by a zoo bench (pid {pid}); wait for it to finish, then merge"
            )
    loaded = [(folder, read_results(folder)) for folder in folders]
    first_folder, first = loaded[0]
    for folder, results in loaded[1:]:
        difference = dataset_difference(first.get("dataset"), results.get("dataset"))
        if difference:
            raise ZooError(
                f"cannot merge {folder}: its dataset differs from {first_folder}'s ({difference}); "
                "merge results of one dataset only"
            )
        versions = [v for v in (first.get("zoo_version"), results.get("zoo_version")) if v not in (None, "unknown")]
        if len(versions) == 2 and versions[0] != versions[1]:  # another zoo may measure otherwise
            raise ZooError(
                f"cannot merge {folder}: it was benched by zoo {versions[1]}, {first_folder} by zoo {versions[0]}; "
                "bench every shard with the same zoo version"
            )
    sizes = {folder: results.get("ensemble_size", DEFAULT_SIZE) for folder, results in loaded}
    for folder, size in sizes.items():
        if size != sizes[first_folder]:
            raise ZooError(
                f"cannot merge {folder}: it was benched with --ensemble-size {size}, {first_folder} with "
                f"{sizes[first_folder]} (0: --no-ensemble); bench every shard with the same settings"
            )
    # Each shard's ensemble was chosen among its own rows only: the merge makes one of all (zoo.ensemble.merged).
    located = [(folder, row) for folder, results in loaded for row in results["backbones"] if row.get("kind") != KIND]
    seen: dict[str, Path] = {}
    for folder, row in located:
        name = row["backbone"]
        if name in seen:
            raise ZooError(f"{name} is in both {seen[name]} and {folder}; merge each backbone from one folder only")
        reference_folder, reference = located[0]
        difference = settings_difference(reference, row)
        if difference:
            raise ZooError(
                f"cannot merge {folder}: {name} was benched with other settings than {reference['backbone']} "
                f"in {reference_folder} ({difference}); bench every shard with the same settings"
            )
        seen[name] = folder
    meta = {
        key: value
        for key, value in first.items()
        if key not in ("backbones", "shard", "format", "no_ensemble", "finished_at")
    }
    own = provenance()
    meta.update(own)  # the merge's own command, zoo and plugins: each shard's are under merged_from
    meta["merged_from"] = [
        {
            "folder": str(folder),
            "shard": results.get("shard"),
            "environment": results.get("environment"),
            **{key: results.get(key) for key in (*own, "finished_at")},
        }
        for folder, results in loaded
    ]
    meta["missing_shards"] = missing_shards([results.get("shard") for _, results in loaded])
    meta["mixed_sweeps"] = mixed_sweeps([results.get("shard") for _, results in loaded])
    # A row's classifier stays in its shard's folder: named absolutely, the merged results find it.
    rows = [
        {**row, "classifier": str((folder / row["classifier"]).resolve())} if row.get("classifier") else row
        for folder, row in located
    ]
    return rows, meta


def prepare_merged_out(out_dir: Path, folders: Sequence[Path]) -> None:
    """Make `out_dir` ready for a merge of `folders`, losing no results: an earlier merge's files
    there are removed (its ensemble and predictions would outlive the rows they were chosen
    from); one of the folders merged, or a bench's own results, is refused."""
    from zoo.bench import remove_rows_files  # here: zoo.bench imports this module
    from zoo.report import read_results

    if any(folder.resolve() == out_dir.resolve() for folder in folders):
        raise ZooError(f"--out {out_dir} is one of the folders to merge; give a new folder")
    if not (out_dir / "results.json").exists():
        return
    try:
        earlier = read_results(out_dir)
    except ZooError:
        earlier = {}
    if "merged_from" not in earlier:
        raise ZooError(
            f"--out {out_dir} holds results that are not an earlier merge's, which the merge would overwrite; "
            "give a new folder"
        )
    remove_rows_files(out_dir, earlier["backbones"])


def mixed_sweeps(shards: list[Any]) -> list[str]:
    """'I/N' of each of `shards` when they come from sweeps of different N (so which backbones
    none of them benched cannot be told), else []."""
    if len({shard["count"] for shard in shards if shard}) < 2:
        return []
    return [f"{shard['index']}/{shard['count']}" for shard in shards if shard]


def missing_shards(shards: list[Any]) -> list[str]:
    """'I/N' of each shard of the sweep not among `shards` (when they all come from one N-way sweep)."""
    counts = {shard["count"] for shard in shards if shard}
    if len(counts) != 1 or None in shards:
        return []
    [count] = counts
    have = {shard["index"] for shard in shards if shard}
    return [f"{index}/{count}" for index in range(1, count + 1) if index not in have]
