"""SLURM's environment and job ids read right, without a cluster (tests/test_slurm.py has one)."""

from __future__ import annotations

import pytest

from engine.study.cluster import expand_ids
from engine.train.slurm_world import first_host, from_slurm, tasks_on_node
from tests.conftest import TINY_PRESET, wb, write_preset

STEP = {
    "SLURM_STEP_NUM_TASKS": "4",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_JOB_ID": "123456",
}


def test_a_multi_task_step_becomes_torchruns_variables():
    assert from_slurm(STEP) == {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(20000 + 123456 % 20000),
    }


def test_a_batch_script_or_torchrun_is_left_alone():
    batch = {k: v for k, v in STEP.items() if k != "SLURM_STEP_NUM_TASKS"} | {"SLURM_NTASKS": "4"}
    assert from_slurm(batch) == {}  # one process of a 4-task allocation: not a world of 4
    assert from_slurm({**STEP, "SLURM_STEP_NUM_TASKS": "1"}) == {}
    assert from_slurm({**STEP, "WORLD_SIZE": "2"}) == {}  # torchrun's own world wins
    assert from_slurm({**STEP, "MASTER_PORT": "29500"})["MASTER_PORT"] == "29500"


@pytest.mark.parametrize(
    ("nodes", "first"),
    [("vm", "vm"), ("gpu[07-09,12],cpu1", "gpu07"), ("a1,a2", "a1"), ("n[3]", "n3")],
)
def test_the_master_is_the_first_node_of_the_list(nodes, first):
    assert first_host(nodes) == first


def test_tasks_per_node_and_folded_array_ids():
    assert [tasks_on_node("2(x3),1", n) for n in range(5)] == [2, 2, 2, 1, 0]
    assert expand_ids("12_[3-5%2]") == ["12_3", "12_4", "12_5"]
    assert expand_ids("12_[1,4]") == ["12_1", "12_4"]
    assert expand_ids("12_0") == ["12_0"]


def test_nproc_and_gpus_that_disagree_exit_2_before_anything_is_written(tmp_path):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    write_preset(
        tmp_path / "s.toml",
        'name = "x"\nseeds = [0]\nsuite = "quick"\n[[arm]]\nname = "a"\npreset = "tiny.toml"\n',
    )
    args = ["--executor", "slurm", "--nproc", "2", "--slurm-gpus", "4"]
    res = wb("study", "s.toml", *args, cwd=tmp_path)
    assert res.returncode == 2 and "--nproc 2 --slurm-gpus 4" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_status_of_an_unknown_study_is_one_line(tmp_path):
    res = wb("study", "status", "nope", cwd=tmp_path)
    assert res.returncode == 2 and "no study called 'nope'" in res.stderr
