"""torchrun's variables from a SLURM step of several tasks, so `srun -n N workbench run` is DDP.

Under `srun --ntasks N` (a study member with `--nproc N` or `--slurm-gpus N`)
every task starts `workbench run` with SLURM's description of the step:
SLURM_PROCID (rank), SLURM_STEP_NUM_TASKS (world), SLURM_LOCALID (rank on
this node), SLURM_STEP_TASKS_PER_NODE, SLURM_NODEID and the step's node
list. `from_slurm` turns them into RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR (the step's first node) and MASTER_PORT (from
the job id, so two jobs sharing a node do not collide). SLURM_STEP_NUM_TASKS
is set by srun only: a batch script (SLURM_NTASKS > 1 but one process) is not
mistaken for a distributed step. torchrun's own variables, when present, win.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PORT_BASE, PORT_SPAN = 20000, 20000


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[07-09,12],cpu1` -> `gpu07`."""
    head = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?", nodelist.strip())
    if head is None or (not head.group(1) and not head.group(2)):
        return nodelist
    prefix, ranges = head.group(1), head.group(2)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def tasks_on_node(tasks_per_node: str, node: int) -> int:
    """Tasks on node `node` of a step: SLURM_STEP_TASKS_PER_NODE reads `2(x3),1`."""
    counts: list[int] = []
    for part in tasks_per_node.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if m is None:
            return 0
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[node] if 0 <= node < len(counts) else 0


def from_slurm(env: Mapping[str, str]) -> dict[str, str]:
    """torchrun's variables for this task of a multi-task SLURM step; {} outside one."""
    if "WORLD_SIZE" in env:  # torchrun or `--nproc` already describe the world
        return {}
    try:
        size = int(env.get("SLURM_STEP_NUM_TASKS", "1"))
        if size <= 1 or "SLURM_PROCID" not in env:
            return {}
        rank = int(env["SLURM_PROCID"])
        local = int(env.get("SLURM_LOCALID", "0"))
        node = int(env.get("SLURM_NODEID", "0"))
        job = int(env.get("SLURM_JOB_ID", "0"))
    except ValueError:
        return {}
    local_size = tasks_on_node(env.get("SLURM_STEP_TASKS_PER_NODE", ""), node) or size
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "127.0.0.1"
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(size),
        "LOCAL_RANK": str(local),
        "LOCAL_WORLD_SIZE": str(local_size),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodes),
        "MASTER_PORT": env.get("MASTER_PORT") or str(PORT_BASE + job % PORT_SPAN),
    }
