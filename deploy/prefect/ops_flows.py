"""Prefect flows of the on-demand operations: train a network, compress a forecaster.

Each flow runs the matching ``fuxiops`` command in a child process of the
flow run (so torch's memory goes away with it), streams its output into the
run's Prefect logs and fails with the command's last lines when it fails.
Parameters are the command's own arguments, so the deployments follow the CLI
without a second definition of its options.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
import time
from typing import Any

from prefect import flow, get_run_logger

#: The fuxiops commands behind the deployments.
TRAIN_COMMAND = ["train"]
COMPRESS_COMMAND = ["compress"]


def run_fuxiops(command: list[str], args: list[str],
                logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None) -> dict[str, Any]:
    """Run ``fuxiops COMMAND ARGS`` and log its output (to the flow run's log); raise on a non-zero exit."""
    logger = logger or get_run_logger()
    # The deployment configuration reaches the command through $FUXIOPS_CONFIG of the worker.
    argv = [sys.executable, "-m", "fuxiops.cli.main", *command, *args]
    logger.info("running %s", " ".join(argv[2:]))
    t0 = time.monotonic()
    last: collections.deque[str] = collections.deque(maxlen=30)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=os.environ.copy()) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            last.append(line)
            logger.info(line)
        code = proc.wait()
    seconds = time.monotonic() - t0
    if code != 0:
        raise RuntimeError(f"`fuxiops {' '.join(command + args)}` failed with exit code {code}:\n" + "\n".join(last))
    return {"command": ["fuxiops", *command, *args], "returncode": code, "seconds": round(seconds, 1)}


@flow(name="train", description="Train or fine-tune networks: runs `fuxiops train ARGS`, e.g. "
      "[\"all\", \"--config\", \"/data/campaigns/c1.yaml\"].")
def train(args: list[str]) -> dict[str, Any]:
    """``args``: the arguments of ``fuxiops train`` (see ``fuxiops train --help``: prepare, stages, all, ship)."""
    return run_fuxiops(TRAIN_COMMAND, args)


@flow(name="compress", description="Distil, prune and export a forecaster: runs `fuxiops compress ARGS`, e.g. "
      "[\"flow\", \"--help\"].")
def compress(args: list[str]) -> dict[str, Any]:
    """``args``: the arguments of ``fuxiops compress`` (distill, prune, export, evaluate, flow)."""
    return run_fuxiops(COMPRESS_COMMAND, args)
