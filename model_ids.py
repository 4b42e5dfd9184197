"""The table of model ids (brnpa/core/model_ids.py) for the shell scripts, through model_ids.sh:

    python3 model_ids.py                 # the ids, one per line
    python3 model_ids.py br_npa_low_res  # its options (status 1 for an unknown id)
"""
import sys

from brnpa.core.model_ids import MODEL_IDS


def main(argv):
    if not argv:
        print("\n".join(MODEL_IDS))
        return 0
    if argv[0] not in MODEL_IDS:
        return 1
    print(" ".join(MODEL_IDS[argv[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
