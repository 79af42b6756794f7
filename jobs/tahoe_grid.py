"""``ray job submit`` entry point: the Tahoe loader grid on the cluster.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/tahoe_grid.py --config pilot --h5ad_dir /shared/tahoe

Takes ``raycell tahoe``'s flags; without ``--strategy`` it runs every enabled strategy
(``--all``). Paths must be absolute (the job's working directory is deleted when it
ends); the config's relative defaults go under ``$RAYCELL_JOB_ROOT``. Submitting the
same command again after a failure skips finished runs and resumes interrupted ones.
"""

import sys

from raycell.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not {"--strategy", "--all"} & set(argv):
        argv.append("--all")
    sys.exit(main(["tahoe", *argv], job=True))
