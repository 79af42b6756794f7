"""``ray job submit`` entry point: a CheMoE grid (cell lines x folds x models) on the cluster.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/chemoe_grid.py --data /shared/pdgrapher --cell_line A549 MCF7 --fold 0 1 2 3 4

Takes ``raycell chemoe``'s flags. Paths must be absolute (the job's working directory
is deleted when it ends); the config's relative defaults go under ``$RAYCELL_JOB_ROOT``.
Submitting the same command again after a failure skips finished runs and resumes
interrupted ones.
"""

import sys

from raycell.cli import main

if __name__ == "__main__":
    sys.exit(main(["chemoe", *sys.argv[1:]], job=True))
