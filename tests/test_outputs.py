"""Outputs touch only what they name: devices, FIFOs, sockets, symlinks, modes, `--png DIR`, `latest`, run folders."""

from __future__ import annotations

import io
import os
import socket
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from typer.testing import CliRunner

from grokkit.cli import app
from grokkit.config import resolve
from grokkit.data import split_dataset
from grokkit.rundir import RunDir
from grokkit.sweep import SweepSpec, create_sweep_dir

runner = CliRunner()
DATA = ["data", "--p", "11", "--train-frac", "0.5"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def npz_ok(payload: bytes) -> bool:
    with np.load(io.BytesIO(payload)) as npz:
        return npz["tokens"].shape == (121, 3)


def test_fifo_is_written_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader waits, as `cat pipe` would
    try:
        result = invoke(*DATA, "--out", fifo)
        assert result.exit_code == 0, result.output
        chunks = []
        while chunk := os.read(reader, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a file"
    assert npz_ok(b"".join(chunks))


def make_device(path: Path, minor: int) -> None:
    """A character device like /dev/null (minor 3) or /dev/full (minor 7), in a temp folder."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")


def test_device_node_is_written_not_replaced(tmp_path):
    null, full = tmp_path / "null", tmp_path / "full"
    make_device(null, 3)
    make_device(full, 7)
    assert invoke(*DATA, "--out", null).exit_code == 0
    refused = invoke(*DATA, "--out", full)
    assert refused.exit_code == 2, refused.output
    assert "cannot write" in refused.stderr and "No space left on device" in refused.stderr
    for device, minor in ((null, 3), (full, 7)):
        st = os.lstat(device)
        assert stat.S_ISCHR(st.st_mode), f"{device.name} was replaced by a file"
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, minor)


def test_socket_is_refused(tmp_path):
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        result = invoke(*DATA, "--out", path)
    finally:
        server.close()
    assert result.exit_code == 2, result.output
    assert "socket" in result.stderr
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_symlink_named_by_the_user_is_followed(tmp_path):
    target, link = tmp_path / "real.npz", tmp_path / "link.npz"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link.symlink_to(target.name)
    assert invoke(*DATA, "--out", link).exit_code == 0
    assert link.is_symlink() and os.readlink(link) == target.name
    assert npz_ok(target.read_bytes())
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    dangling = tmp_path / "later.npz"
    dangling.symlink_to("made-now.npz")
    assert invoke(*DATA, "--out", dangling).exit_code == 0
    assert dangling.is_symlink() and npz_ok((tmp_path / "made-now.npz").read_bytes())


def test_existing_file_keeps_its_mode_and_group(tmp_path):
    out = tmp_path / "private.npz"
    out.write_bytes(b"old")
    out.chmod(0o600)
    group = os.getgid() if os.geteuid() != 0 else 4321
    if os.geteuid() == 0:
        os.chown(out, -1, group)
    assert invoke(*DATA, "--out", out).exit_code == 0
    assert npz_ok(out.read_bytes())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.stat().st_gid == group
    csv = tmp_path / "private.csv"
    csv.write_text("old")
    csv.chmod(0o600)
    assert invoke(*DATA, "--format", "csv", "--out", csv).exit_code == 0
    assert stat.S_IMODE(csv.stat().st_mode) == 0o600 and csv.read_text().startswith("x,y,label,split")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from grokkit.runner import start_run

    run_dir = tmp_path_factory.mktemp("outputs") / "run"
    start_run(resolve(None, {**TINY, "train.early_exit": False}), run_dir)
    return run_dir


def test_png_folder_never_writes_through_a_planted_symlink(tiny_run, tmp_path):
    figures, outside = tmp_path / "figs", tmp_path / "outside"
    figures.mkdir()
    outside.mkdir()
    names = ("spectrum_over_training.png", "neuron_clusters.png", "attention_patterns.png")
    for name in names:
        (outside / name).write_text("precious")
        (figures / name).symlink_to(outside / name)  # planted by someone else sharing the folder
    result = invoke("inspect", tiny_run, "--png", figures)
    assert result.exit_code == 0, result.output
    for name in names:
        assert (outside / name).read_text() == "precious", f"{name} was written through the link"
        assert not (figures / name).is_symlink()
        assert (figures / name).read_bytes()[:4] == b"\x89PNG"


def test_report_and_export_files_follow_links_and_keep_modes(tiny_run, tmp_path):
    csv, target = tmp_path / "metrics.csv", tmp_path / "real.csv"
    target.write_text("old")
    target.chmod(0o600)
    csv.symlink_to(target)
    assert invoke("export", tiny_run, "--csv", csv).exit_code == 0
    assert csv.is_symlink() and target.read_text().startswith("step,")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert invoke("export", tiny_run, "--jsonl", fifo).exit_code == 0
        assert os.read(reader, 1 << 16).startswith(b'{"step": 10')
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def create(path: Path, notify=None) -> RunDir:
    config = resolve(None, TINY)
    split = split_dataset(config.data.p**2, config.data.train_frac, config.data_seed)
    return RunDir.create(path, config, {"jax": "test"}, split, notify=notify or (lambda message: None))


def test_latest_is_managed_only_where_grokkit_made_it(tmp_path):
    runs = tmp_path / "runs"
    create(runs / "a")
    assert os.readlink(runs / "latest") == "a"
    create(runs / "b")
    assert os.readlink(runs / "latest") == "b"  # grokkit's own link moves on

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "latest").symlink_to("../notes")  # the user's own link, unrelated to grokkit
    said: list[str] = []
    create(mine / "run", said.append)
    assert os.readlink(mine / "latest") == "../notes"
    assert any("latest is not a link grokkit made" in m and "left as it is" in m for m in said), said

    (mine / "other").mkdir()
    (mine / "latest").unlink()
    (mine / "latest").symlink_to("other")  # a sibling folder, but not a run
    create(mine / "run2", said.append)
    assert os.readlink(mine / "latest") == "other"

    (mine / "latest").unlink()
    (mine / "latest").mkdir()  # a real folder called latest
    create(mine / "run3")
    assert (mine / "latest").is_dir() and not (mine / "latest").is_symlink()


def test_sweep_folder_leaves_a_foreign_latest_alone(tmp_path):
    (tmp_path / "latest").symlink_to("/etc")
    said: list[str] = []
    create_sweep_dir(tmp_path / "sweep", SweepSpec(resolve(None, TINY), {"seed": [0, 1]}), said.append)
    assert os.readlink(tmp_path / "latest") == "/etc"
    assert any("left as it is" in m for m in said), said


def test_precreated_run_folder_keeps_its_mode_and_group(tmp_path):
    folder = tmp_path / "shared-run"
    folder.mkdir()
    group = os.getgid() if os.geteuid() != 0 else 4321
    if os.geteuid() == 0:
        os.chown(folder, -1, group)
    folder.chmod(0o2770)  # group-shared, setgid
    before = os.stat(folder)
    run = create(folder)
    after = os.stat(folder)
    assert (run.path / "config.json").is_file() and (run.path / "checkpoints").is_dir()
    assert after.st_ino == before.st_ino, "the folder was replaced"
    assert stat.S_IMODE(after.st_mode) == 0o2770
    assert after.st_gid == group
    assert (folder / "config.json").stat().st_gid == group  # files inside inherit the folder's group
    assert not [p for p in tmp_path.iterdir() if ".creating-" in p.name]
