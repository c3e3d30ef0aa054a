"""`zoo new-plugin` writes a package that installs, passes its own test, and benches.

The package is really installed (`pip install -e`, no build isolation, so offline) into a
throwaway venv that sees this environment's packages through a .pth file, and run from there.
"""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zoo import scaffold
from zoo.cli import app
from zoo.errors import ZooError


def run(python: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's python, the package folder) after `zoo new-plugin my-net` and `pip install -e`."""
    root = tmp_path_factory.mktemp("scaffold")
    result = CliRunner().invoke(app, ["new-plugin", "my-net", "--dir", str(root)])
    assert result.exit_code == 0, result.output
    package = root / "zoo-my-net"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    venv_site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root)
    this_site = sysconfig.get_paths()["purelib"]
    (Path(venv_site.stdout.strip()) / "zoo_base.pth").write_text(f"import site; site.addsitedir({this_site!r})\n")
    pip = run(python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", str(package), cwd=root)
    assert pip.returncode == 0, pip.stderr
    return python, package


def test_the_files_of_a_complete_package(installed):
    _, package = installed
    files = sorted(str(path.relative_to(package)) for path in package.rglob("*") if path.is_file())
    assert files == ["README.md", "pyproject.toml", "tests/test_zoo_my_net.py", "zoo_my_net.py"]
    assert 'my_net = "zoo_my_net"' in (package / "pyproject.toml").read_text()


def test_the_package_passes_its_own_tests(installed):
    python, package = installed
    result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_zoo_lists_and_benches_it_and_sees_edits(installed, tiny_dataset, tmp_path):
    python, package = installed
    module = package / "zoo_my_net.py"
    module.write_text(module.read_text().replace("replace it with yours", "edited in place"))
    zoo = ["-c", "from zoo.cli import main; main()"]

    listed = run(python, *zoo, "list", "--json", cwd=tmp_path)
    row = {row["name"]: row for row in json.loads(listed.stdout)}["my_net"]
    assert (row["plugin"], row["source"]) == ("my_net", "custom")
    assert "edited in place" in row["description"]  # an editable install

    bench = run(python, *zoo, "bench", "my_net", "--data", str(tiny_dataset), "--epochs", "1",
                "--out", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    [result] = json.loads(bench.stdout)["backbones"]
    assert (result["backbone"], result["status"]) == ("my_net", "ok")


def test_bad_names_and_taken_folders_are_refused(tmp_path):
    with pytest.raises(ZooError, match="plugin name 'My Net'"):
        scaffold.new_plugin("My Net", tmp_path)
    with pytest.raises(ZooError, match=r"plugin name 'net\\n'"):  # a last line break, too
        scaffold.new_plugin("net\n", tmp_path)
    assert not list(tmp_path.iterdir())
    (tmp_path / "zoo-taken" / "keep.txt").parent.mkdir()
    (tmp_path / "zoo-taken" / "keep.txt").write_text("mine")
    with pytest.raises(ZooError, match="already exists and is not empty"):
        scaffold.new_plugin("taken", tmp_path)
