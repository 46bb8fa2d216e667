"""Train PPO signal controllers (issue #5: not implemented yet).

Training lands with the multi-agent PPO work; until then this entry point says so plainly
instead of pretending. Use ``python evaluate.py`` to run the classical baselines.
"""

import sys

if __name__ == "__main__":
    sys.exit("train.py: PPO training is not implemented yet (tracked in issue #5); "
             "run `python evaluate.py` for the classical baselines.")
