"""Run several ``attnas`` commands in one ``torchrun`` launch (tests/test_distributed.py).

Usage: ``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py DUMP_ROOT JOBS_JSON``
where JOBS_JSON is a list of ``[name, argv]``.  Every rank runs each command as
``python -m attnas.cli.main ARGV`` would (``runpy``), with ``$ATTNAS_DEBUG_DUMP=DUMP_ROOT/name``;
one process group serves all of them, which saves a torch import and a rendezvous per
command on a small machine.
"""
import json
import os
import runpy
import sys

if __name__ == "__main__":
    root, jobs = sys.argv[1], json.loads(sys.argv[2])
    for name, argv in jobs:
        os.environ["ATTNAS_DEBUG_DUMP"] = os.path.join(root, name)
        sys.argv = ["attnas", *argv]
        try:
            runpy.run_module("attnas.cli.main", run_name="__main__", alter_sys=False)
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        sys.stdout.flush()
